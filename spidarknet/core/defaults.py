"""The defaults that more than one module writes down, in one table.

A command's option and the library function behind it take their default from here, so
the two cannot drift apart; the help texts print these values.  Changing one changes
what every command does by default: the figures recorded in docs/ and the built-in
model's card were measured with these.
"""

from __future__ import annotations

# -- detection --------------------------------------------------------------------------------

#: score at or above which a frame is a single hit, for weights whose model card does not
#: say (``detect --threshold`` overrides it); also the threshold a validation falls back to
#: when no threshold maximises F1 (no positive among its frames)
DETECTION_THRESHOLD: float = 0.5

#: frames detect reads, preprocesses and scores at a time (``detect --chunk``,
#: :func:`spidarknet.detection.local.detect_frames`); memory grows with it, not with the file
DETECT_CHUNK_FRAMES: int = 64

#: frames per network pass of a detection backend (``detect --batch``, the backends)
INFERENCE_BATCH: int = 16

#: where the pages (``detect --monitor``, ``label``) listen unless --host says otherwise: this
#: machine only
PAGE_HOST: str = "127.0.0.1"
#: ... and on which port (0 lets the system choose a free one, printed when the page is up)
PAGE_PORT: int = 8765

# -- reading, sizing, simulating ---------------------------------------------------------------

#: frames read at a time where the caller does not say (``export-dataset --chunk``,
#: :meth:`spidarknet.frames.source.FrameSource.chunks`)
READ_CHUNK_FRAMES: int = 32

#: frames sized at a time (``size --chunk``, :func:`spidarknet.sizing.estimate_sizes`)
SIZE_CHUNK_FRAMES: int = 16

#: the diameters (nm) of the particle whose single hits the simulator labels positive
#: (``simulate --label-range``): PR772's; the benchmarks judge the pipeline with this size window
LABEL_RANGE_NM: tuple = (60.0, 75.0)

#: frames simulated and written at a time (``simulate --chunk-frames``,
#: :func:`spidarknet.simulate.simulate_file`)
SIMULATE_CHUNK_FRAMES: int = 16

# -- training data and training ----------------------------------------------------------------

#: images per darknet training batch (``export-dataset --batch``,
#: :func:`spidarknet.engine.cfg.configure_network`)
TRAIN_BATCH: int = 16

#: the HDF5 filter frames are written with (``simulate --compression``, ``detect --write-cxi``):
#: deflate level 1, built into HDF5, so any h5py reads it without plugins; on simulated frames
#: 86x smaller than raw (24 kB a frame, not 2.1 MB) and the fastest of the gzip levels to read
#: (README, "Files being written, compressed files", tools/compression_table.py)
FRAME_COMPRESSION: str = "gzip-1"

#: training iterations (``export-dataset --max-batches``); ``train`` shortens them for a small
#: data set (:func:`spidarknet.engine.train.fit_iterations_to_set`)
TRAIN_ITERATIONS: int = 1500

#: random share of the labelled frames kept for validation, stratified by class
#: (``export-dataset --valid-fraction``, the learning curve)
VALID_FRACTION: float = 0.2

#: turns and mirror images written of each training frame, of the 8 a square has
#: (``export-dataset --orientations``, the learning curve); with darknet's own random
#: mirror in training, 4 cover all 8
ORIENTATIONS: int = 4
