"""Hit lists: a score and a box for every frame, the threshold, and how they were made.

CSV columns: ``file,dataset,index,score,x,y,w,h,hit`` — one row per frame scored, in
frame-key order; ``x, y`` is the top-left corner (column, row) and ``w, h`` the size of
the best detection's box in full-frame detector pixels; ``hit`` is 1 where
``score >= threshold``.  The JSON summary beside it (``hits.json`` for ``hits.csv``)
holds the threshold, counts, backend, model and timing.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spidarknet.errors import InputError
from spidarknet.frames import FrameKey
from spidarknet.outputs import atomic_path, write_json

log = logging.getLogger(__name__)

COLUMNS = ["file", "dataset", "index", "score", "x", "y", "w", "h", "hit"]


@dataclass
class HitList:
    keys: list[FrameKey]
    scores: np.ndarray                 # (n,) float32
    boxes: np.ndarray                  # (n, 4) x, y, w, h in full-frame pixels
    threshold: float
    meta: dict = field(default_factory=dict)
    #: the selection when it is narrower than score >= threshold (e.g. a size window)
    selected: np.ndarray | None = None

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(len(self.scores), 4)
        if len(self.keys) != len(self.scores):
            raise ValueError("keys and scores differ in length")
        if self.selected is not None:
            self.selected = np.asarray(self.selected, dtype=bool)
            if self.selected.shape != self.scores.shape:
                raise ValueError("one selection flag per frame is needed")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def hits(self) -> np.ndarray:
        """Selected frames: the explicit selection if there is one, else score >= threshold."""
        return self.selected if self.selected is not None else self.scores >= self.threshold

    @property
    def n_hits(self) -> int:
        return int(np.count_nonzero(self.hits))

    def selected_keys(self) -> list[FrameKey]:
        return [k for k, h in zip(self.keys, self.hits) if h]

    def sorted(self) -> "HitList":
        order = sorted(range(len(self.keys)), key=lambda i: self.keys[i])
        return HitList([self.keys[i] for i in order], self.scores[order], self.boxes[order],
                       self.threshold, dict(self.meta),
                       None if self.selected is None else self.selected[order])

    def summary_line(self) -> str:
        n = len(self)
        share = 100.0 * self.n_hits / n if n else 0.0
        return f"{self.n_hits} of {n} frames selected ({share:.1f} %) at threshold {self.threshold:.3g}"

    # -- writing -------------------------------------------------------------------------
    def write_rows(self, handle) -> None:
        writer = csv.writer(handle)
        for key, score, box, hit in zip(self.keys, self.scores, self.boxes, self.hits):
            writer.writerow([key.file, key.dataset, key.index, f"{score:.6f}",
                             *(f"{v:.1f}" for v in box), int(hit)])

    def write_csv(self, path: str | os.PathLike, force: bool = False) -> None:
        with atomic_path(path, force, "hit list") as tmp:
            with open(tmp, "w", newline="") as handle:
                csv.writer(handle).writerow(COLUMNS)
                self.write_rows(handle)
        write_json(self.summary(), summary_path(path), True, "hit list summary")

    def summary(self) -> dict:
        return {"threshold": self.threshold, "frames": len(self), "hits": self.n_hits, **self.meta}


def summary_path(csv_path: str | os.PathLike) -> Path:
    return Path(csv_path).with_suffix(".json")


def read_hits(path: str | os.PathLike) -> HitList:
    """A hit list written by :meth:`HitList.write_csv` (its JSON summary is optional)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"hit list {path} does not exist")
    keys, scores, boxes, flags = [], [], [], []
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or any(c not in reader.fieldnames for c in ("file", "index", "score")):
                raise InputError(f"{path} is not a hit list: it needs columns {','.join(COLUMNS)}")
            for number, row in enumerate(reader, start=2):
                try:
                    keys.append(FrameKey(row["file"], row.get("dataset") or "", int(row["index"])))
                    scores.append(float(row["score"]))
                    boxes.append([float(row.get(c) or "nan") for c in ("x", "y", "w", "h")])
                    flags.append(int(row.get("hit") or 0))
                except (TypeError, ValueError):
                    raise InputError(f"{path}:{number}: malformed row") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read hit list {path}: {exc}") from None
    meta = {}
    summary = summary_path(path)
    if summary.is_file():
        try:
            meta = json.loads(summary.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("cannot read %s (%s): taking the threshold from the hit column", summary, exc)
            meta = {}
    if "threshold" in meta:
        threshold = float(meta.pop("threshold"))
    else:  # recover it from the flags: the lowest score marked as a hit
        s, f = np.asarray(scores), np.asarray(flags, dtype=bool)
        threshold = float(s[f].min()) if f.any() else float("inf")
    for key in ("frames", "hits"):
        meta.pop(key, None)
    scores = np.asarray(scores)
    flags = np.asarray(flags, dtype=bool)
    # keep the selection as written where it is narrower than the threshold (select, size windows)
    selected = None if np.array_equal(flags, scores >= threshold) else flags
    return HitList(keys, scores, np.asarray(boxes).reshape(-1, 4), threshold, meta, selected)
