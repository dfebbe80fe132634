"""Frames to features: the network scores, the fit measures (what ``learn`` and ``propose`` read)."""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from spidarknet.core.defaults import INFERENCE_BATCH
from spidarknet.core.errors import ConfigError
from spidarknet.detection.local import detect_frames
from spidarknet.engine.backends import OpenedDetector
from spidarknet.frames.source import FrameSource
from spidarknet.hits import HitList
from spidarknet.selection.features import Measured, measure
from spidarknet.selection.selector import Selector, learn_selector, screen_for


def score_frames(source: FrameSource, model, *, backend: str = "opencv", batch: int = INFERENCE_BATCH,
                 on_chunk: Callable[[int], object] | None = None) -> HitList:
    """The network's score of every frame of ``source`` (one process, no prefilter: every
    frame a user labels is seen by the network), sorted by frame key."""
    with OpenedDetector(model, backend, batch=batch) as detector:
        hits, _ = detect_frames(source, model.preprocessing, detector, model.threshold, on_chunk=on_chunk)
    return hits.sorted()


def labels_in_order(hits: HitList, labels: dict[str, np.ndarray]) -> np.ndarray:
    """The label (1, 0) of every frame of ``hits``, from per-file label arrays."""
    return np.array([labels[k.file][k.index] for k in hits.keys], dtype=int)


def measure_hits(source: FrameSource, hits: HitList, screen: float, *, jobs: int | None = None,
                 on_frames: Callable[[int], object] | None = None) -> Measured:
    """The features of every frame of ``hits`` (scored frames of ``source``), fitting those
    scoring at least ``screen``."""
    return measure(source, hits.keys, np.where(hits.unusable, 0.0, hits.scores), screen, jobs=jobs,
                   on_frames=on_frames)


def labelled_among(source: FrameSource, hits: HitList, lists: list[str]) -> np.ndarray:
    """Whether each frame of ``hits`` (frames of ``source``) is named in one of the selection
    CSVs ``lists`` (labelled already, either way)."""
    from spidarknet.dataset import POSITIVE, labels_from_selections
    if not lists:
        return np.zeros(len(hits), dtype=bool)
    named = labels_from_selections(source, lists, [])  # every listed frame 1, the rest 0
    return np.array([named[k.file][k.index] == POSITIVE for k in hits.keys], dtype=bool)


def measure_pool(source: FrameSource, hits: HitList, screen: float, *, size: int, seed: int = 0,
                 labelled: np.ndarray | None = None, jobs: int | None = None,
                 on_frames: Callable[[int], object] | None = None,
                 with_labelled: bool = False) -> tuple[np.ndarray, Measured]:
    """(rows of ``hits``, their features): the pool that proposals are drawn from (see
    :func:`~spidarknet.selection.propose.pool_index`), every frame of it fitted; with
    ``with_labelled`` the ``labelled`` frames join it (proposals then keep away from them)."""
    from spidarknet.selection.propose import pool_index
    pool = pool_index(hits.scores, screen, size, seed, exclude=labelled)
    if with_labelled and labelled is not None:
        pool = np.union1d(pool, np.flatnonzero(labelled))
    measured = measure(source, [hits.keys[i] for i in pool], hits.scores[pool], -math.inf, jobs=jobs,
                       on_frames=on_frames)
    return pool, measured


def learn_from_labels(source: FrameSource, labels: dict[str, np.ndarray], model, *, screen: float | None = None,
                      backend: str = "opencv", folds: int = 5, seed: int = 0, jobs: int | None = None,
                      progress: Callable[[str, int], Callable[[int], object]] | None = None) -> Selector:
    """The selection learnt from the labelled frames of ``source`` (per-file 1/0 labels, -1
    for unlabelled): the network scores them, the fit measures those it lets through (the
    screen: given, or :func:`screen_for`), the selector learns the labels.  ``progress`` is
    given each stage ("score", "fit") and its number of frames, and returns the callback
    counting them."""
    from spidarknet.dataset import used_frames
    from spidarknet.detection.shards import file_digest
    source = source.select(used_frames(source, labels))
    if len(source) == 0:
        raise ConfigError("none of the inputs' frames carries a label")
    def counter(stage: str, total: int):
        return progress(stage, total) if progress is not None else None
    hits = score_frames(source, model, backend=backend, on_chunk=counter("score", len(source)))
    y = labels_in_order(hits, labels)
    if screen is None:
        screen = screen_for(hits.scores, y, model.validation.get("screening_threshold", model.threshold))
    fits = int(np.count_nonzero(np.where(hits.unusable, 0.0, hits.scores) >= screen))
    measured = measure_hits(source, hits, screen, jobs=jobs, on_frames=counter("fit", fits))
    weights = os.path.abspath(model.weights)
    return learn_selector(measured, y, card_screen=None, screen=screen, folds=folds, seed=seed,
                          weights={"path": weights, "sha256": file_digest(weights)})
