"""Scoring an exported data set's validation images with a model, and picking a threshold."""

from __future__ import annotations

import numpy as np

from spidarknet.dataset import ExportedDataset
from spidarknet.engine.backends import OpenedDetector
from spidarknet.engine.model import Model
from spidarknet.errors import InputError
from spidarknet import metrics


def load_images(ds: ExportedDataset, images: list[str]) -> np.ndarray:
    import cv2
    out = []
    for rel in images:
        bgr = cv2.imread(str(ds.root / rel), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read {ds.root / rel}")
        out.append(bgr[..., ::-1])
    return np.ascontiguousarray(np.stack(out))


def score_images(ds: ExportedDataset, model: Model, *, backend: str = "opencv",
                 subset: str = "valid") -> tuple[np.ndarray, np.ndarray]:
    """Scores and 0/1 labels of the data set's ``subset`` images."""
    images = ds.valid_images if subset == "valid" else ds.train_images
    labels = np.array([(ds.root / rel.replace("images/", "labels/", 1).rsplit(".", 1)[0]).with_suffix(".txt")
                       .stat().st_size > 0 for rel in images], dtype=bool)
    scores = []
    with OpenedDetector(model, backend) as detector:
        for start in range(0, len(images), 256):
            scores.append(detector.detect(load_images(ds, images[start:start + 256])).scores)
    return np.concatenate(scores) if scores else np.zeros(0, np.float32), labels


def threshold_report(scores: np.ndarray, labels: np.ndarray) -> dict:
    """The max-F1 threshold and the figures there, plus ROC AUC."""
    threshold = metrics.best_f_threshold(scores, labels)
    if not np.isfinite(threshold):
        threshold = 0.5
    c = metrics.confusion(scores, labels, threshold)
    return {"threshold": float(threshold), "n_frames": int(len(scores)), "n_single": int(labels.sum()),
            "precision": c.precision, "recall": c.recall, "f1": c.f1, "accuracy": c.accuracy,
            "roc_auc": metrics.roc_auc(scores, labels)}
