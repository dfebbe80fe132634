"""``export-dataset`` as a library function: labelled CXI frames -> a Darknet training data set.

:func:`export_dataset` configures the network, reads the labels (a 0/1 dataset in the files,
or selections of positives and negatives), splits train and validation, writes every used
frame through the one preprocessing into a staged folder (images, labels, lists, cfg,
``preprocess.json``, ``export.json``) and renames it into place.  :func:`preprocessing_for`
turns the preprocessing options into the settings a data set is saved with.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

from spidarknet.core.defaults import ORIENTATIONS, READ_CHUNK_FRAMES, TRAIN_BATCH, TRAIN_ITERATIONS, VALID_FRACTION
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.outputs import check_destination, staged_dir
from spidarknet.core.version import __version__
from spidarknet.dataset import (DarknetDatasetWriter, check_trainable, labels_from_dataset, labels_from_selections,
                                split_subsets, used_frames, write_frames)
from spidarknet.engine.cfg import configure_network, load_template
from spidarknet.frames.options import FrameOptions, is_runs, open_source
from spidarknet.frames.source import expand_inputs
from spidarknet.preprocess import Preprocessing, Preprocessor

_DEFAULT = Preprocessing()


@dataclass
class PreprocessOptions:
    """The preprocessing asked for: a crop in q (``q_max_inv_nm``, the default) or in detector
    pixels (``crop``); None leaves the choice to :func:`preprocessing_for`."""

    size: int = _DEFAULT.size
    q_max_inv_nm: float | None = None
    q_min_inv_nm: float | None = None    # 0: none; None: the input files' beam stop
    crop: int | None = None
    centre_px: tuple[float, float] | None = None
    adu_per_photon: float | None = None
    scale: str = _DEFAULT.scale
    vmax: float | None = None
    colormap: str = _DEFAULT.colormap


@dataclass
class ExportSettings:
    """What ``spidarknet export-dataset`` is asked to do (its options, by the same names)."""

    frames: FrameOptions
    out: str
    force: bool = False
    labels_dataset: str | None = None
    positives: Sequence[str] = ()
    negatives: Sequence[str] = ()
    valid_fraction: float = VALID_FRACTION
    valid_files: Sequence[str] | None = None
    seed: int = 0
    orientations: int = ORIENTATIONS
    net: str = "yolov2-tiny-spi"
    width_scale: float | None = None    # default: 0.25 for yolov2-tiny-spi, 1 for the others
    batch: int = TRAIN_BATCH
    subdivisions: int = 1
    max_batches: int | None = None      # default TRAIN_ITERATIONS (train may shorten a small set's)
    learning_rate: float | None = None
    burn_in: int | None = None
    jitter: float | None = None
    preprocessing: PreprocessOptions = field(default_factory=PreprocessOptions)
    chunk: int = READ_CHUNK_FRAMES


@dataclass
class ExportResult:
    """What was exported: the folder, its counts, the network and the preprocessing."""

    out: str
    counts: object                      # the writer's counts: train_pos, train_neg, valid_pos, valid_neg, total
    cfg_name: str
    preprocessing: Preprocessing
    seconds: float
    masked_bad_values: int


def export_dataset(settings: ExportSettings, feedback: Feedback = SILENT) -> ExportResult:
    """Run ``spidarknet export-dataset`` (see the module)."""
    started = time.perf_counter()
    cfg, cfg_name = _network(settings, preprocessing_for(settings.preprocessing, feedback=feedback).size)
    check_destination(settings.out, settings.force, "output folder")
    if settings.chunk < 1:
        raise InputError("--chunk must be at least 1")
    _check_label_options(settings)
    valid_paths = set(expand_inputs(settings.valid_files)) if settings.valid_files else None
    extra = sorted(valid_paths - set(expand_inputs(settings.frames.inputs))) if valid_paths else []
    frames = replace(settings.frames, adu_per_photon=settings.preprocessing.adu_per_photon)
    source = open_source(frames, extra_inputs=extra)
    options = settings.preprocessing
    if is_runs(frames):  # the run reader rounds photons
        options = replace(options, adu_per_photon=None)
    pre_settings = preprocessing_for(options, source.files, feedback)  # checked against each file's geometry
    if settings.labels_dataset:
        labels = labels_from_dataset(source, settings.labels_dataset)
    else:
        labels = labels_from_selections(source, list(settings.positives), list(settings.negatives))
    subsets = split_subsets(source, labels, valid_fraction=settings.valid_fraction, seed=settings.seed,
                            valid_files=valid_paths)
    used = used_frames(source, labels)
    source = source.select(used)
    check_trainable(labels, subsets, used)
    counts, n_bad, seconds = _write(settings, source, Preprocessor(pre_settings), labels, subsets, cfg, cfg_name,
                                    valid_paths, started, feedback)
    if n_bad:
        feedback.warn(f"{n_bad} NaN or negative pixel values were masked")
    return ExportResult(settings.out, counts, cfg_name, pre_settings, seconds, n_bad)


def _write(settings: ExportSettings, source, pre: Preprocessor, labels, subsets, cfg, cfg_name: str, valid_paths,
           started: float, feedback: Feedback):
    """The data set written into a staged folder, renamed into place when complete."""
    with staged_dir(settings.out, settings.force) as stage:
        writer = DarknetDatasetWriter(stage)
        try:
            with feedback.bar(total=len(source), desc="export") as bar:
                n_bad = write_frames(writer, source, pre, labels, subsets, chunk_frames=settings.chunk,
                                     orientations=settings.orientations, on_chunk=bar.update)
        finally:
            writer.close()
        writer.write_definitions(cfg, cfg_name)
        pre.settings.save(stage / "preprocess.json")
        seconds = time.perf_counter() - started
        writer.write_summary(_summary(settings, source, pre, valid_paths, writer.counts, cfg_name, n_bad, seconds))
    return writer.counts, n_bad, seconds


def _network(settings: ExportSettings, size: int):
    """The network cfg configured from ``net`` and its options, and the name to save it under."""
    net_name = settings.net
    template = load_template(net_name)
    width_scale = settings.width_scale
    if width_scale is None:
        width_scale = 0.25 if net_name == "yolov2-tiny-spi" else 1.0
    cfg = configure_network(template, size=size, batch=settings.batch, subdivisions=settings.subdivisions,
                            max_batches=settings.max_batches or TRAIN_ITERATIONS,
                            learning_rate=settings.learning_rate, burn_in=settings.burn_in, width_scale=width_scale,
                            jitter=settings.jitter)
    cfg_name = os.path.basename(net_name)[:-4] if net_name.endswith(".cfg") else net_name
    cfg_name = cfg_name.split(".")[0]  # darknet names backups after the cfg up to its first dot
    return cfg, cfg_name


def _check_label_options(settings: ExportSettings) -> None:
    label_sources = [bool(settings.labels_dataset), bool(settings.positives)]
    if sum(label_sources) != 1:
        raise ConfigError("give the labels either as --labels-dataset PATH or as --positives CSV "
                          "(with optional --negatives CSV), not both and not neither")
    if settings.negatives and not settings.positives:
        raise ConfigError("--negatives needs --positives")


def _summary(settings: ExportSettings, source, pre: Preprocessor, valid_paths, c, cfg_name: str,
             n_bad: int, seconds: float) -> dict:
    """The contents of export.json."""
    return {
        "spidarknet_version": __version__,
        "inputs": [{"file": f.path, "dataset": f.dataset, "frames": len(f.indices),
                    "crop_px": pre.for_file(f).crop} for f in source.files],
        "labels": settings.labels_dataset or {"positives": list(settings.positives),
                                              "negatives": list(settings.negatives)},
        "split": {"valid_files": sorted(valid_paths)} if valid_paths else
                 {"valid_fraction": settings.valid_fraction, "seed": settings.seed},
        "counts": {"train_single": c.train_pos, "train_other": c.train_neg,
                   "valid_single": c.valid_pos, "valid_other": c.valid_neg},
        "orientations": settings.orientations,
        "max_batches_given": settings.max_batches is not None,     # else train may shorten a small set's
        "cfg": f"{cfg_name}.cfg", "net": settings.net, "masked_bad_values": n_bad,
        "seconds": round(seconds, 3),
    }


def _default_q_max(files, centre, q_max: float, feedback: Feedback) -> float:
    """``q_max``, or less where a file's detector ends before it: the q the detectors all
    reach (rounded down to 1e-3 nm⁻¹), so that a data set is not padded by default."""
    from spidarknet.preprocess import detector_reach_q_inv_nm
    try:
        reach = min(detector_reach_q_inv_nm(f, centre) for f in files)
    except (InputError, TypeError):  # no geometry: the check of the settings says so
        return q_max
    if reach >= q_max:
        return q_max
    reached = math.floor(reach * 1000) / 1000
    feedback.say(f"note: the detector reaches q {reach:.3f} nm⁻¹, less than the default {q_max:g}: the images span "
                 f"q ≤ {reached:g} nm⁻¹ (--q-max {reached:g}); give --q-max to choose")
    return reached


def preprocessing_for(options: PreprocessOptions, files=None, feedback: Feedback = SILENT) -> Preprocessing:
    """The :class:`~spidarknet.preprocess.Preprocessing` the options ask for.

    ``crop`` gives pixel settings, ``q_max_inv_nm`` q settings, both checked against ``files``
    (the :class:`~spidarknet.frames.source.FileInfo` of the inputs) when given, from which the
    default ``q_min_inv_nm`` is taken too.  Without ``crop``, ``q_max_inv_nm`` or ``q_min_inv_nm``:
    the q default, or, for ``files`` that it does not fit (no geometry, say), the pixel default
    with a warning.
    """
    from spidarknet.preprocess import DEFAULT_CROP, DEFAULT_Q_MAX_INV_NM, masked_centre_q_inv_nm
    o = options
    common = dict(size=o.size, adu_per_photon=o.adu_per_photon, scale=o.scale, vmax=o.vmax, colormap=o.colormap)
    centre = tuple(o.centre_px) if o.centre_px else None
    if o.crop is not None and o.q_max_inv_nm is not None:
        raise ConfigError("give the crop in detector pixels (--crop) or in q (--q-max), not both")
    q_min = o.q_min_inv_nm if o.q_min_inv_nm else None  # 0: none
    if o.crop is not None:
        settings = Preprocessing(crop=o.crop, centre_px=centre, q_min_inv_nm=q_min, **common)
    else:
        # the centre is the files' geometry (--centre overrides it there), not the model's
        q_max = DEFAULT_Q_MAX_INV_NM if o.q_max_inv_nm is None else o.q_max_inv_nm
        if o.q_max_inv_nm is None and files:
            q_max = _default_q_max(files, centre, q_max, feedback)
        if o.q_min_inv_nm is None and files is not None:
            try:
                q_min = masked_centre_q_inv_nm(files)
            except InputError:
                q_min = None  # the check below says what is wrong
        settings = Preprocessing(crop=None, q_max_inv_nm=q_max, q_min_inv_nm=q_min, **common)
    if files is not None:
        try:
            settings.check_files(files)
        except InputError as exc:
            if o.crop is not None or o.q_max_inv_nm is not None or o.q_min_inv_nm is not None:
                raise
            feedback.warn(f"{exc}\nwarning: cropping {DEFAULT_CROP} detector pixels instead (--crop "
                          f"{DEFAULT_CROP}): a model trained on it fits only this geometry")
            return Preprocessing(crop=DEFAULT_CROP, centre_px=centre, **common)
    return settings
