"""What every inference backend returns, and decoding of the YOLOv2 region output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.weights import grid_size


@dataclass
class Detections:
    """Per image: the frame score and the box of the best detection.

    ``scores`` is the highest class-weighted objectness over all anchors and cells;
    ``boxes`` is that detection's (cx, cy, w, h), normalised to the network input.
    """

    scores: np.ndarray  # (n,) float32
    boxes: np.ndarray   # (n, 4) float32

    @classmethod
    def concat(cls, parts: list["Detections"]) -> "Detections":
        if not parts:
            return cls(np.zeros(0, np.float32), np.zeros((0, 4), np.float32))
        return cls(np.concatenate([p.scores for p in parts]), np.concatenate([p.boxes for p in parts]))


class Detector(Protocol):
    name: str
    batch: int

    def detect(self, images: np.ndarray) -> Detections:
        """``images``: (n, size, size, 3) uint8 RGB, any n."""

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class RegionSpec:
    """What is needed to decode a [region] layer's output."""

    num: int
    classes: int
    coords: int
    grid: int
    anchors: tuple[float, ...]

    @classmethod
    def from_cfg(cls, cfg: DarknetCfg) -> "RegionSpec":
        _, region = cfg.detection_layer()
        return cls(num=region.get_int("num"), classes=region.get_int("classes"),
                   coords=region.get_int("coords", 4), grid=grid_size(cfg),
                   anchors=tuple(region.get_floats("anchors")))

    @property
    def outputs(self) -> int:
        return self.grid * self.grid * self.num * (self.coords + 1 + self.classes)


def decode_region(output: np.ndarray, spec: RegionSpec) -> Detections:
    """Decode darknet's activated region output, (batch, outputs) floats.

    Layout per image: for each anchor ``n`` the planes x, y, w, h, objectness, class
    probabilities, each ``grid × grid``; x, y and objectness already went through the
    logistic and the classes through the softmax (darknet's forward pass does both).
    """
    g, n, c = spec.grid, spec.num, spec.classes
    out = output.reshape(len(output), n, spec.coords + 1 + c, g, g)
    objectness = out[:, :, spec.coords]
    probs = out[:, :, spec.coords + 1:] * objectness[:, :, None]
    best_class = probs.max(axis=2)                       # (b, n, g, g)
    flat = best_class.reshape(len(out), -1)
    best = flat.argmax(axis=1)
    scores = flat[np.arange(len(out)), best].astype(np.float32)
    a, rem = np.divmod(best, g * g)
    row, col = np.divmod(rem, g)
    sel = out[np.arange(len(out)), a, :, row, col]      # (b, coords + 1 + c)
    anchors = np.asarray(spec.anchors, dtype=np.float32).reshape(n, 2)
    boxes = np.stack([(col + sel[:, 0]) / g, (row + sel[:, 1]) / g,
                      np.exp(sel[:, 2]) * anchors[a, 0] / g, np.exp(sel[:, 3]) * anchors[a, 1] / g], axis=1)
    return Detections(scores, clip_boxes(boxes))


def clip_boxes(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) boxes cut to the image [0, 1] × [0, 1], as darknet reports them."""
    x0 = np.clip(boxes[:, 0] - boxes[:, 2] / 2, 0, 1)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2] / 2, 0, 1)
    y0 = np.clip(boxes[:, 1] - boxes[:, 3] / 2, 0, 1)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3] / 2, 0, 1)
    return np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=1).astype(np.float32)
