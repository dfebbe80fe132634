"""spidarknet from Python: what a command does, in a line or two of a notebook.

>>> import spidarknet as sk
>>> frames = sk.open_frames("run7.cxi")                       # files, globs; geometry overrides
>>> hits = sk.detect(frames, size_range=(60, 75))             # the built-in model, the size window
>>> hits.to_pandas().query("hit == 1")                        # or hits.write_csv("hits.csv")
>>> sizes = sk.fit_spheres(frames, hits.selected_keys())      # one SizeResult per frame
>>> sk.evaluate(hits, truth_dataset="/truth/label")["f1"]

Every function takes the objects the others return (a :class:`~spidarknet.frames.source.FrameSource`,
a :class:`~spidarknet.engine.model.Model`, a :class:`~spidarknet.hits.HitList`) and raises the
project's exceptions (:class:`~spidarknet.core.errors.SpidarknetError` and its kinds), whose
message says what to do.  The commands give the same results on the same files.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from spidarknet.core.defaults import DETECT_CHUNK_FRAMES, INFERENCE_BATCH
from spidarknet.core.errors import ConfigError
from spidarknet.detection.local import Prefilter, detect_frames
from spidarknet.detection.shards import file_digest
from spidarknet.engine.backends import OpenedDetector
from spidarknet.engine.model import Model, builtin_weights
from spidarknet.engine.model import load_model as _load_model
from spidarknet.frames.euxfel import EuXFELRun, RunOptions, is_run_input
from spidarknet.frames.source import EV_J, LIGHT_M_S, PLANCK_J_S, FrameSource, GeometryOverrides, parse_frame_range
from spidarknet.hits import HitList, read_hits
from spidarknet.selection.decide import check_icosahedron, decide
from spidarknet.selection.selector import Selector
from spidarknet.sizing import SizeResult, SizingSettings, estimate_sizes


def open_frames(inputs: str | Sequence[str], *, dataset: str | None = None, frames: str | None = None,
                distance_m: float | None = None, pixel_size_m: float | None = None,
                energy_ev: float | None = None, centre_px: tuple[float, float] | None = None,
                keep_bad_pixels: bool = False, **run_options) -> FrameSource:
    """The frames of CXI/HDF5 files (paths or globs), read lazily in chunks.  ``frames`` is a
    range as on the command line ("0:100"); the geometry options replace what the files say
    (metres, eV, pixels as (x, y)).  Hot and dead pixels that a file's own frames show are
    masked unless ``keep_bad_pixels`` (:mod:`spidarknet.frames.badpixels`).

    European XFEL runs (run folders, or "p2304/r107"): ``run_options`` are those of
    :class:`~spidarknet.frames.euxfel.RunOptions` (``geom="agipd.geom"``,
    ``quad_positions=[(x, y)] * 4`` in mm, ``modules=(0, 1)``, ``adu_per_photon=6.0``, ...)."""
    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    wavelength = None if energy_ev is None else PLANCK_J_S * LIGHT_M_S / (energy_ev * EV_J)
    if any(is_run_input(p) for p in paths):
        span = parse_frame_range(frames)
        options = RunOptions(distance_m=distance_m, wavelength_m=wavelength,
                             frames=None if span is None else (span.start, span.stop, span.step), **run_options)
        return EuXFELRun(paths, options)
    if run_options:
        raise ConfigError(f"{', '.join(run_options)}: options of European XFEL runs, and no input is a run")
    overrides = GeometryOverrides(distance_m=distance_m, pixel_size_m=pixel_size_m, wavelength_m=wavelength,
                                  centre_px=centre_px)
    return FrameSource(paths, dataset=dataset, frames=parse_frame_range(frames), geometry=overrides,
                       bad_pixels=not keep_bad_pixels)


def load_model(weights: str | None = None, *, threshold: float | None = None) -> Model:
    """The model of ``weights`` (its card beside them), or the built-in one."""
    return _load_model(weights or builtin_weights(), threshold=threshold)


def detect(frames: FrameSource, model: Model | str | None = None, *, size_range: Sequence[float] | None = None,
           selector: Selector | str | None = None, threshold: float | None = None, backend: str = "opencv",
           prefilter: bool = True, jobs: int | None = None, batch: int = INFERENCE_BATCH,
           on_frames: Callable[[int], object] | None = None, icosahedron: bool | None = None) -> HitList:
    """Score every frame (one process) and, with ``size_range`` (nm) or ``selector`` (a
    :class:`Selector` or its JSON file), fit the frames the network lets through and let the
    window or the selector decide, as ``detect`` does (with ``size_range`` the fits near its
    edges are refined by an icosahedron unless ``icosahedron`` is False, as ``--no-icosahedron``;
    True without a window is an error).  The network screens at the model
    card's screening threshold when a window or selector decides, else at its threshold
    (``threshold`` replaces either)."""
    if size_range is not None and selector is not None:
        raise ConfigError("give a size range or a selector, not both")
    check_icosahedron(icosahedron, size_range)
    model = model if isinstance(model, Model) else load_model(model)
    if isinstance(selector, str):
        selector = Selector.load(selector)
    if selector is not None:
        selector.check_weights(model.weights, file_digest(model.weights))
    if threshold is not None:
        model.threshold = float(threshold)
    elif selector is not None:
        model.threshold = selector.screen
    elif size_range is not None and model.validation.get("screening_threshold") is not None:
        model.threshold = float(model.validation["screening_threshold"])
    with OpenedDetector(model, backend, batch=batch) as detector:
        hits, _ = detect_frames(frames, model.preprocessing, detector, model.threshold,
                                prefilter=Prefilter() if prefilter else None, chunk_frames=DETECT_CHUNK_FRAMES,
                                on_chunk=on_frames)
    hits = hits.sorted()
    if isinstance(frames, EuXFELRun):
        hits.meta["run_options"] = frames.recorded()
    if size_range is not None or selector is not None:
        decide(hits, frames, size_range=None if size_range is None else tuple(size_range), selector=selector,
               jobs=jobs, icosahedron=icosahedron)
    return hits


def learn(frames: FrameSource, *, positives: Sequence[str] = (), negatives: Sequence[str] = (),
          labels_dataset: str | None = None, model: Model | str | None = None, folds: int = 5,
          seed: int = 0, jobs: int | None = None) -> Selector:
    """A selection learnt from labelled frames (selection CSVs, or a 0/1 dataset in the files),
    as ``learn`` makes it; ``selector.figures`` holds its cross-validated P/R/F1."""
    from spidarknet.dataset import labels_from_dataset, labels_from_selections
    from spidarknet.selection.pipeline import learn_from_labels
    if bool(labels_dataset) == bool(positives):
        raise ConfigError("give the labels as positives (with optional negatives) or as labels_dataset")
    model = model if isinstance(model, Model) else load_model(model)
    labels = (labels_from_dataset(frames, labels_dataset) if labels_dataset
              else labels_from_selections(frames, list(positives), list(negatives)))
    return learn_from_labels(frames, labels, model, folds=folds, seed=seed, jobs=jobs)


def fit_spheres(frames: FrameSource, keys=None, *, jobs: int | None = None,
                settings: SizingSettings | None = None) -> list[SizeResult]:
    """The sphere fit of every frame (or of ``keys``, frames of ``frames``)."""
    return estimate_sizes(frames, keys, settings, jobs=jobs)


def evaluate(hits: HitList | str, *, truth_dataset: str | None = "/truth/label", truth_csv: str | None = None) -> dict:
    """Precision, recall, F1, ROC AUC, ... of a hit list (or its CSV) against the truth."""
    from spidarknet.judge.evaluation import evaluate as _evaluate
    from spidarknet.judge.truth import load_truth
    hits = read_hits(hits) if isinstance(hits, str) else hits
    truth = load_truth(hits, dataset=None if truth_csv else truth_dataset, csv_path=truth_csv)
    flags = np.asarray(hits.hits, dtype=bool)
    return _evaluate(truth.hits.scores, truth.labels, truth.hits.threshold, selected=flags[truth.index],
                     unusable=truth.hits.unusable)
