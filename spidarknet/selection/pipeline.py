"""Frames to features: the network scores, the fit measures (what ``learn`` and ``propose`` read)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from spidarknet.core.defaults import INFERENCE_BATCH
from spidarknet.detection.local import detect_frames
from spidarknet.engine.backends import OpenedDetector
from spidarknet.frames.source import FrameSource
from spidarknet.hits import HitList
from spidarknet.selection.features import Measured, measure


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


def screened_count(hits: HitList, screen: float) -> int:
    return int(np.count_nonzero((hits.scores >= screen) & ~hits.unusable))
