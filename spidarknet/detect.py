"""Frames to a hit list: read, preprocess as recorded for the model, detect, collect."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from spidarknet.engine.detector import Detector
from spidarknet.errors import EngineError
from spidarknet.frames import FrameSource
from spidarknet.hits import HitList
from spidarknet.preprocess import Preprocessing, Preprocessor


@dataclass
class StageTimes:
    """Seconds spent per stage (wall clock, summed over chunks)."""

    read: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    total: float = 0.0

    def as_dict(self, frames: int) -> dict:
        out = {"read_s": self.read, "preprocess_s": self.preprocess, "inference_s": self.inference,
               "total_s": self.total}
        out["frames_per_s"] = frames / self.total if self.total > 0 else None
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


class PartialResult(EngineError):
    """The engine failed part-way; ``hits`` holds the frames scored before."""

    def __init__(self, message: str, hits: HitList):
        super().__init__(message)
        self.hits = hits


def boxes_to_frame_pixels(boxes: np.ndarray, settings: Preprocessing, crop_origin: tuple[int, int]) -> np.ndarray:
    """Normalised (cx, cy, w, h) network-input boxes -> (x, y, w, h) full-frame pixels."""
    r0, c0 = crop_origin
    crop = settings.crop
    x = c0 - 0.5 + (boxes[:, 0] - boxes[:, 2] / 2) * crop
    y = r0 - 0.5 + (boxes[:, 1] - boxes[:, 3] / 2) * crop
    return np.stack([x, y, boxes[:, 2] * crop, boxes[:, 3] * crop], axis=1).astype(np.float32)


def detect_frames(source: FrameSource, settings: Preprocessing, detector: Detector, threshold: float, *,
                  chunk_frames: int = 64, on_chunk: Callable[[int], None] | None = None) -> tuple[HitList, StageTimes]:
    """Score every selected frame of ``source``; returns the hit list and stage timings."""
    pre = Preprocessor(settings)
    keys, scores, boxes = [], [], []
    times = StageTimes()
    started = time.perf_counter()
    chunks = source.chunks(chunk_frames, roi=pre.roi)
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        t1 = time.perf_counter()
        times.read += t1 - t0
        if chunk is None:
            break
        processed = pre.process(chunk)
        t2 = time.perf_counter()
        times.preprocess += t2 - t1
        try:
            found = detector.detect(processed.images)
        except EngineError as exc:
            partial = HitList(keys, np.asarray(scores, np.float32), np.asarray(boxes, np.float32).reshape(-1, 4),
                              threshold)
            raise PartialResult(str(exc), partial) from None
        times.inference += time.perf_counter() - t2
        keys.extend(chunk.keys)
        scores.extend(found.scores.tolist())
        boxes.extend(boxes_to_frame_pixels(found.boxes, settings, processed.crop_origin).tolist())
        if on_chunk is not None:
            on_chunk(len(chunk))
    times.total = time.perf_counter() - started
    hits = HitList(keys, np.asarray(scores, np.float32), np.asarray(boxes, np.float32).reshape(-1, 4), threshold)
    return hits, times
