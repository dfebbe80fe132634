"""Inference with OpenCV's DNN module on darknet's own cfg and weights (CPU, no build).

OpenCV 5 removed the Darknet importer: spidarknet pins ``opencv-python-headless<5``.
Its region layer reports one row per cell and anchor, ``[cx, cy, w, h, objectness,
class scores...]``, the class scores zeroed below the cfg's ``thresh``; the frame score
is therefore taken from the objectness column times the best class probability that
OpenCV would report without thresholding — for one class, the objectness itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spidarknet.core.defaults import INFERENCE_BATCH
from spidarknet.core.errors import EngineError
from spidarknet.engine.detector import Detections, RegionSpec, clip_boxes


class OpenCVDetector:
    name = "opencv"

    def __init__(self, cfg_path: Path, weights_path: Path, spec: RegionSpec, *, batch: int = INFERENCE_BATCH,
                 threads: int | None = None):
        import cv2
        if not hasattr(cv2.dnn, "readNetFromDarknet"):
            raise EngineError(f"OpenCV {cv2.__version__} has no Darknet importer (removed in OpenCV 5); "
                              "install opencv-python-headless>=4.8,<5")
        if threads is not None:
            cv2.setNumThreads(int(threads))
        try:
            self.net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights_path))
        except cv2.error as exc:
            raise EngineError(f"OpenCV could not load {cfg_path} with {weights_path}: {exc}") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.spec = spec
        self.batch = batch
        self._per_image = spec.grid * spec.grid * spec.num

    def detect(self, images: np.ndarray) -> Detections:
        import cv2
        parts = []
        for start in range(0, len(images), self.batch):
            part = images[start:start + self.batch]
            blob = cv2.dnn.blobFromImages(part, scalefactor=1.0 / 255.0, size=part.shape[2:0:-1],
                                          swapRB=False, crop=False)
            self.net.setInput(blob)
            out = self.net.forward()
            parts.append(self._decode(np.asarray(out).reshape(len(part), self._per_image, -1)))
        return Detections.concat(parts)

    def _decode(self, rows: np.ndarray) -> Detections:
        objectness = rows[:, :, 4]
        best = objectness.argmax(axis=1)
        idx = np.arange(len(rows))
        return Detections(objectness[idx, best].astype(np.float32), clip_boxes(rows[idx, best, :4]))

    def close(self) -> None:
        self.net = None
