"""Streamed CXI writer for simulated frames and their truth.

Layout (readers elsewhere depend on it)::

    /cxi_version                                      150
    /entry_1/instrument_1/detector_1/data             (N, 1024, 1024) uint16 photons,
                                                      chunks (1, 1024, 1024), attr axes;
                                                      compressed as :data:`COMPRESSIONS` says
    /entry_1/data_1/data                              soft link to the above
    /entry_1/instrument_1/detector_1/distance         float64, m
    /entry_1/instrument_1/detector_1/x_pixel_size     float64, m
    /entry_1/instrument_1/detector_1/y_pixel_size     float64, m
    /entry_1/instrument_1/detector_1/corner_position  float64 [x, y, z], m
    /entry_1/instrument_1/detector_1/mask_shared      (1024, 1024) uint32, CXI bits
    /entry_1/instrument_1/detector_1/mask             (N, 1024, 1024) uint32, CXI bits per
                                                      frame (the shared ones, and 0x2 where
                                                      the frame saturated); only with a
                                                      saturating readout (measured-like)
    /entry_1/instrument_1/detector_1/description      "simulated pnCCD"
    /entry_1/instrument_1/source_1/energy             float64, J
    /entry_1/instrument_1/source_1/wavelength         float64, m
    /truth/{label, kind, diameter_nm, n_particles, shape, centre_x_px, centre_y_px,
            photons, extent_px}                       (N,) each, attr label_rule
    /truth/{stray_photons, saturated_pixels,          (N,) each, only with measured-like
            written_photons}                          effects (spidarknet.simulate.measured)
    /truth attributes                                 seed, fractions and every setting of
                                                      SimulationSettings (settings_json too)

The frame shape and the geometry are those of the written frames (after any binning);
1024 x 1024 pixels of 75 µm by default.

``corner_position`` convention: the position (x, y, z) in metres of the outer corner of
pixel (0, 0) — the corner at pixel-index coordinates (-0.5, -0.5) — in a frame whose origin
is the interaction point, z along the beam (z = distance) and the beam hitting the detector
at x = y = 0, the nominal beam centre.  x grows with the column index, y with the row index.
In pixel-index coordinates (pixel i's centre at i) the nominal centre is therefore
``cx = -corner_x / x_pixel_size - 0.5``, ``cy = -corner_y / y_pixel_size - 0.5``.  The true
per-frame centre (with jitter) is in ``/truth/centre_x_px`` and ``/truth/centre_y_px``.

The file is written under a temporary name in the destination folder and renamed when
complete; on any error or KeyboardInterrupt the temporary file is removed, so a half-written
output never appears under the final name.
"""

from __future__ import annotations

import os
import uuid

import h5py
import numpy as np

from spidarknet.core.errors import OutputError
from spidarknet.simulate.detector import PnCCD

DATA_PATH = "/entry_1/instrument_1/detector_1/data"
LABEL_RULE = "single=1: one particle, 60-75 nm"

#: frame compressions the writer offers: name -> what it is.  The last four are the filters
#: facilities use (European XFEL and Dectris detectors write bitshuffle-LZ4); they come
#: from the ``hdf5plugin`` package, which readers need too.
COMPRESSIONS = {
    "gzip-1": "deflate level 1 (built into HDF5; simulate's default, see FRAME_COMPRESSION)",
    "gzip": "deflate level 4 (built into HDF5)",
    "lzf": "LZF (built into h5py)",
    "shuffle-gzip": "byte shuffle then deflate level 4 (built into HDF5)",
    "bitshuffle-lz4": "bitshuffle with LZ4 (hdf5plugin, filter 32008)",
    "blosc": "Blosc with LZ4 and byte shuffle (hdf5plugin, filter 32001)",
    "zstd": "Zstandard level 3 (hdf5plugin, filter 32015)",
}


def compression_options(name: str | None) -> dict:
    """Keyword arguments of ``h5py.Group.create_dataset`` for a compression of :data:`COMPRESSIONS`."""
    if name is None or name == "none":
        return {}
    if name not in COMPRESSIONS:
        raise OutputError(f"unknown compression {name!r}; use one of {', '.join(COMPRESSIONS)} or none")
    if name in ("gzip", "gzip-1"):
        return {"compression": "gzip", "compression_opts": 4 if name == "gzip" else 1}
    if name == "lzf":
        return {"compression": "lzf"}
    if name == "shuffle-gzip":
        return {"shuffle": True, "compression": "gzip", "compression_opts": 4}
    try:
        import hdf5plugin
    except ImportError:
        raise OutputError(f"compression {name!r} needs the hdf5plugin package: pip install hdf5plugin") from None
    if name == "bitshuffle-lz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if name == "blosc":
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    return dict(hdf5plugin.Zstd(clevel=3))


#: truth dataset name -> dtype
TRUTH_FIELDS = {
    "label": np.int8,
    "kind": "S12",
    "diameter_nm": np.float32,
    "n_particles": np.int16,
    "shape": "S12",
    "centre_x_px": np.float32,
    "centre_y_px": np.float32,
    "photons": np.int32,
    "extent_px": np.float32,
}


def check_output_path(path: str) -> None:
    """Raise :class:`OutputError` unless ``path``'s folder exists and is writable."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise OutputError(f"output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder {folder} is not writable; choose another output path")
    if os.path.isdir(path):
        raise OutputError(f"{path} is a folder; give a file name such as "
                          f"{os.path.join(path, 'sim.cxi')}")


class CxiWriter:
    """Write ``count`` frames in chunks into a pre-created CXI file (atomic on success).

    Use as a context manager::

        with CxiWriter(path, count, PNCCD, mask) as w:
            w.write(frames, truth)      # frames (n, rows, cols) uint16; truth: dict of arrays
        # renamed to ``path`` here if no exception escaped, else removed
    """

    def __init__(self, path: str, count: int, geometry: PnCCD, mask: np.ndarray, *,
                 compression: str | None = None, attrs: dict | None = None,
                 extra_truth: dict | None = None, frame_masks: bool = False):
        """``extra_truth`` (name -> dtype) adds truth datasets beyond :data:`TRUTH_FIELDS`;
        ``frame_masks`` adds the per-frame mask ``detector_1/mask`` (N, rows, cols) uint32,
        deflated, that :meth:`write` then needs."""
        if count < 1:
            raise OutputError("the frame count must be at least 1")
        opts = compression_options(compression)
        check_output_path(path)
        self.path = os.path.abspath(path)
        self.count = int(count)
        self.n_written = 0
        self.truth_fields = {**TRUTH_FIELDS, **(extra_truth or {})}
        self.frame_masks = bool(frame_masks)
        folder, name = os.path.split(self.path)
        self.tmp_path = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
        self._file = None
        try:
            self._file = h5py.File(self.tmp_path, "w")
            self._create(geometry, mask, opts, attrs or {})
        except BaseException:
            self._discard()
            raise

    def _create(self, geometry: PnCCD, mask: np.ndarray, opts: dict, attrs: dict) -> None:
        f = self._file
        rows, cols = geometry.shape
        f.create_dataset("cxi_version", data=np.int64(150))
        det = f.create_group("entry_1/instrument_1/detector_1")
        self._data = det.create_dataset("data", shape=(self.count, rows, cols), dtype=np.uint16,
                                        chunks=(1, rows, cols), **opts)
        self._data.attrs["axes"] = "experiment_identifier:y:x"
        det.create_dataset("distance", data=np.float64(geometry.distance_m))
        det.create_dataset("x_pixel_size", data=np.float64(geometry.pixel_size_m))
        det.create_dataset("y_pixel_size", data=np.float64(geometry.pixel_size_m))
        det.create_dataset("corner_position",
                           data=np.array(geometry.corner_position_m, dtype=np.float64))
        det.create_dataset("mask_shared", data=mask.astype(np.uint32), compression="gzip", compression_opts=1)
        det.create_dataset("description", data="simulated pnCCD")
        src = f.create_group("entry_1/instrument_1/source_1")
        src.create_dataset("energy", data=np.float64(geometry.photon_energy_J))
        src.create_dataset("wavelength", data=np.float64(geometry.wavelength_m))
        f.require_group("entry_1/data_1")["data"] = h5py.SoftLink(DATA_PATH)
        truth = f.create_group("truth")
        truth.attrs["label_rule"] = LABEL_RULE
        for key, value in attrs.items():
            truth.attrs[key] = value
        self._truth = {name: truth.create_dataset(name, shape=(self.count,), dtype=dtype)
                       for name, dtype in self.truth_fields.items()}
        self._masks = None
        if self.frame_masks:  # mostly the shared mask again: deflate squeezes it to little
            self._masks = det.create_dataset("mask", shape=(self.count, rows, cols), dtype=np.uint32,
                                             chunks=(1, rows, cols), shuffle=True,
                                             compression="gzip", compression_opts=1)

    def write(self, frames: np.ndarray, truth: dict, masks: np.ndarray | None = None) -> None:
        """Append ``frames`` (n, rows, cols), the matching truth arrays and (with
        ``frame_masks``) their masks (n, rows, cols) of CXI bits."""
        n = len(frames)
        start, stop = self.n_written, self.n_written + n
        if stop > self.count:
            raise OutputError(f"more frames than announced ({stop} > {self.count})")
        if (masks is None) != (self._masks is None):
            raise OutputError("per-frame masks must be given exactly when the writer has frame_masks")
        self._data[start:stop] = frames
        if masks is not None:
            self._masks[start:stop] = masks
        for name, dset in self._truth.items():
            dset[start:stop] = np.asarray(truth[name], dtype=dset.dtype)
        self.n_written = stop

    def commit(self) -> None:
        """Close the file and move it to its final name."""
        if self.n_written != self.count:
            raise OutputError(f"only {self.n_written} of {self.count} frames were written")
        self._file.close()
        os.replace(self.tmp_path, self.path)

    def _discard(self) -> None:
        try:
            if self._file is not None and self._file.id.valid:
                self._file.close()
        finally:
            if os.path.exists(self.tmp_path):
                os.remove(self.tmp_path)

    def __enter__(self) -> "CxiWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self._discard()
                raise
        else:
            self._discard()
        return False
