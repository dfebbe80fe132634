"""Hit lists: a score and a box for every frame, the threshold, and how they were made.

CSV columns: ``file,dataset,index,score,x,y,w,h,hit,status`` — one row per frame scored,
then the columns of what was measured where a size window or a selector decided (the sphere
fit's numbers, the selector's ``probability`` and the ``reason`` a frame was dropped; see
:mod:`spidarknet.selection.features`),
in frame-key order; ``x, y`` is the top-left corner (column, row) and ``w, h`` the size
of the best detection's box in full-frame detector pixels, clipped to the detector (pixel
centres at whole numbers, so ``-0.5 <= x`` and ``x + w <= columns - 0.5``, likewise for
rows); ``hit`` is 1 where ``score >= threshold`` and the frame could be judged.

``status`` says whether the model could see the frame as it was trained to:

- ``ok``: the model's crop lies on the detector;
- ``padded``: the crop reaches beyond the frame's pixels (a frame smaller than the crop,
  or a beam centre near its edge): the missing pixels were padded with zeros, the frame
  was scored all the same (read its score with care);
- ``no-valid-pixels``: no pixel of the crop is usable (all NaN, negative or masked): the
  frame never reached the network, its score is written as 0 and its box as an empty one
  at the crop's centre (what readers without the column see: an empty shot), and it is
  never selected, whatever the threshold.

Lists written before the column existed read as all ``ok``; readers that do not know the
column (it is the last) see the same rows as before.  The JSON summary beside the CSV
(``hits.json`` for ``hits.csv``) holds the threshold, counts, backend, model and timing,
and under ``frame_checks`` how many frames were padded or had no valid pixel and how many
NaN or negative pixel values were masked, per file.

:func:`read_selected` gives a hit list with its ``hit`` column as written (``spidarknet select``
may have narrowed it below ``score >= threshold``); :func:`write_selected` writes one whose
``hit`` column is given explicitly.  :func:`read_any_selection` is the one reader of "a
selection" given on a command line: a hit list or a plain ``file,index`` CSV, told apart by
its header.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.outputs import atomic_path, write_json
from spidarknet.core.selection import csv_header, read_selection
from spidarknet.frames.source import FrameKey

log = logging.getLogger(__name__)

COLUMNS = ["file", "dataset", "index", "score", "x", "y", "w", "h", "hit", "status"]
#: the values of the ``status`` column; a HitList keeps their index (int8)
STATUSES = ("ok", "padded", "no-valid-pixels")
OK, PADDED, NO_VALID_PIXELS = 0, 1, 2


@dataclass
class HitList:
    keys: list[FrameKey]
    scores: np.ndarray                 # (n,) float32
    boxes: np.ndarray                  # (n, 4) x, y, w, h in full-frame pixels
    threshold: float
    meta: dict = field(default_factory=dict)
    #: the selection when it is narrower than score >= threshold (e.g. a size window)
    selected: np.ndarray | None = None
    #: per frame an index into :data:`STATUSES` (None: all ``ok``)
    status: np.ndarray | None = None
    #: more per-frame columns, written after ``status`` in this order: numbers (float arrays,
    #: NaN written empty) or text (lists of str) - what the size window or selector measured
    columns: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(len(self.scores), 4)
        if len(self.keys) != len(self.scores):
            raise ValueError("keys and scores differ in length")
        if self.selected is not None:
            self.selected = np.asarray(self.selected, dtype=bool)
            if self.selected.shape != self.scores.shape:
                raise ValueError("one selection flag per frame is needed")
        self.status = (np.zeros(len(self.scores), dtype=np.int8) if self.status is None
                       else np.asarray(self.status, dtype=np.int8).reshape(len(self.scores)))
        for name, values in self.columns.items():
            if name in COLUMNS or len(values) != len(self.scores):
                raise ValueError(f"column {name!r}: a new name and one value per frame are needed")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def unusable(self) -> np.ndarray:
        """Frames without a valid pixel in the crop (status ``no-valid-pixels``): never selected."""
        return self.status == NO_VALID_PIXELS

    @property
    def n_unusable(self) -> int:
        return int(np.count_nonzero(self.unusable))

    @property
    def hits(self) -> np.ndarray:
        """Selected frames: the explicit selection if there is one, else score >= threshold;
        never a frame without valid pixels."""
        chosen = self.selected if self.selected is not None else self.scores >= self.threshold
        return chosen & ~self.unusable

    @property
    def n_hits(self) -> int:
        return int(np.count_nonzero(self.hits))

    def selected_keys(self) -> list[FrameKey]:
        return [k for k, h in zip(self.keys, self.hits) if h]

    def sorted(self) -> "HitList":
        order = sorted(range(len(self.keys)), key=lambda i: self.keys[i])
        return HitList([self.keys[i] for i in order], self.scores[order], self.boxes[order],
                       self.threshold, dict(self.meta),
                       None if self.selected is None else self.selected[order], self.status[order],
                       {name: _take(values, order) for name, values in self.columns.items()})

    def summary_line(self) -> str:
        n = len(self)
        share = 100.0 * self.n_hits / n if n else 0.0
        return f"{self.n_hits} of {n} frames selected ({share:.1f} %) at threshold {self.threshold:.3g}"

    # -- writing -------------------------------------------------------------------------
    def write_rows(self, handle) -> None:
        writer = csv.writer(handle)
        extra = [[_cell(v) for v in values] for values in self.columns.values()]
        for i, (key, score, box, hit, status) in enumerate(zip(self.keys, self.scores, self.boxes, self.hits,
                                                               self.status)):
            writer.writerow([key.file, key.dataset, key.index, f"{score:.6f}",
                             *(f"{v:.1f}" for v in box), int(hit), STATUSES[status], *(c[i] for c in extra)])

    def write_csv(self, path: str | os.PathLike, force: bool = False) -> None:
        with atomic_path(path, force, "hit list") as tmp:
            with open(tmp, "w", newline="") as handle:
                csv.writer(handle).writerow(COLUMNS + list(self.columns))
                self.write_rows(handle)
        write_json(self.summary(), summary_path(path), True, "hit list summary")
        log.info("wrote the hit list %s: %d rows, %d hits at threshold %.3g", path, len(self), self.n_hits,
                 self.threshold)

    def to_dict(self) -> dict[str, list]:
        """The hit list as columns (the CSV's names): file, dataset, index, score, x, y, w, h,
        hit, status and the measured columns."""
        out = {"file": [k.file for k in self.keys], "dataset": [k.dataset for k in self.keys],
               "index": [k.index for k in self.keys], "score": self.scores.astype(float).tolist()}
        out.update({name: self.boxes[:, i].astype(float).tolist() for i, name in enumerate("xywh")})
        out["hit"] = self.hits.astype(int).tolist()
        out["status"] = [STATUSES[s] for s in self.status]
        out.update({name: list(values) if isinstance(values, list) else values.tolist()
                    for name, values in self.columns.items()})
        return out

    def to_pandas(self):
        """The hit list as a pandas DataFrame, one row per frame (needs pandas)."""
        try:
            import pandas
        except ImportError:
            raise ConfigError("HitList.to_pandas needs pandas: pip install pandas (or use to_dict())") from None
        return pandas.DataFrame(self.to_dict())

    def summary(self) -> dict:
        return {"threshold": self.threshold, "frames": len(self), "hits": self.n_hits, **self.meta}


def _take(values, order):
    return values[order] if isinstance(values, np.ndarray) else [values[i] for i in order]


def _cell(value) -> str:
    """A CSV cell of an extra column: text as it is, numbers with 6 significant digits, NaN empty."""
    if isinstance(value, str):
        return value
    if not np.isfinite(value):
        return ""
    if float(value).is_integer() and abs(value) < 2 ** 53:  # identifiers (trainId ~1.5e9) whole
        return str(int(value))
    return f"{value:.6g}"


def join_columns(parts: list["HitList"]) -> dict:
    """The extra columns of hit lists joined in the order given (those all of them have)."""
    if not parts:
        return {}
    names = [n for n in parts[0].columns if all(n in p.columns for p in parts)]
    return {n: (np.concatenate([np.asarray(p.columns[n]) for p in parts])
                if all(isinstance(p.columns[n], np.ndarray) for p in parts)
                else [v for p in parts for v in p.columns[n]]) for n in names}


def _extra_columns(names, rows) -> dict:
    """Extra columns as read: numbers where every cell is one (or empty), else text."""
    columns = {}
    for name in names:
        cells = [row.get(name) or "" for row in rows]
        try:
            columns[name] = np.array([float(c) if c.strip() else np.nan for c in cells], dtype=np.float64)
        except ValueError:
            columns[name] = cells
    return columns


def summary_path(csv_path: str | os.PathLike) -> Path:
    return Path(csv_path).with_suffix(".json")


def read_hits(path: str | os.PathLike) -> HitList:
    """A hit list written by :meth:`HitList.write_csv` (its JSON summary is optional; a
    list without the ``status`` column reads as all ``ok``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"hit list {path} does not exist")
    keys, scores, boxes, flags, status, rows = [], [], [], [], [], []
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or any(c not in reader.fieldnames for c in ("file", "index", "score")):
                raise InputError(f"{path} is not a hit list: it needs columns {','.join(COLUMNS)}")
            extra = [name for name in reader.fieldnames if name not in COLUMNS]
            for number, row in enumerate(reader, start=2):
                if extra:
                    rows.append(row)
                try:
                    keys.append(FrameKey(row["file"], row.get("dataset") or "", int(row["index"])))
                    scores.append(float(row["score"]))
                    boxes.append([float(row.get(c) or "nan") for c in ("x", "y", "w", "h")])
                    flags.append(int(row.get("hit") or 0))
                    status.append(STATUSES.index(row.get("status") or "ok"))
                except (TypeError, ValueError):
                    raise InputError(f"{path}:{number}: malformed row (status must be one of "
                                     f"{', '.join(STATUSES)})") from None
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
    status = np.asarray(status, dtype=np.int8)
    # keep the selection as written where it is narrower than the threshold (select, size windows)
    selected = None if np.array_equal(flags, (scores >= threshold) & (status != NO_VALID_PIXELS)) else flags
    return HitList(keys, scores, np.asarray(boxes).reshape(-1, 4), threshold, meta, selected, status,
                   _extra_columns(extra, rows))


# -- the selection as written (``hit`` column; ``spidarknet select`` may narrow it) ----------

def read_selected(path: str | os.PathLike, *, unique: bool = False) -> tuple[HitList, np.ndarray]:
    """The hit list and its ``hit`` column as written (bool, row order); with ``unique``, a
    frame named twice is an :class:`InputError` (a copy or an export takes each frame once)."""
    hits = read_hits(path)
    if unique:
        seen = set()
        for key in hits.keys:
            k = (os.path.abspath(key.file), key.dataset, key.index)
            if k in seen:
                raise InputError(f"the hit list {path} names frame {key.index} of {key.file} twice; "
                                 "merge duplicate rows first ('spidarknet merge' does)")
            seen.add(k)
    return hits, np.asarray(hits.hits, dtype=bool)


@dataclass
class WrittenSelection:
    """The frames a hit list or a plain selection CSV selects, as written."""

    path: str
    kind: str                          # "hit list" or "selection"
    frames: list[tuple[str, int]]      # (file as written, index) of the selected frames
    hits: HitList | None = None        # the whole hit list; None for a plain selection


def read_any_selection(path: str | os.PathLike) -> WrittenSelection:
    """A hit list (its ``hit`` column as written) or a plain selection CSV (``file,index``
    rows, header optional), told apart by the header: a hit list's names ``score`` and ``hit``."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(f"{path} does not exist")
    header = csv_header(path)
    if "score" in header and "hit" in header:
        hits, flags = read_selected(path)
        return WrittenSelection(path, "hit list", [(k.file, k.index) for k, f in zip(hits.keys, flags) if f], hits)
    return WrittenSelection(path, "selection", [(e.file, e.index) for e in read_selection(path)])


def write_selected(hits: HitList, flags: np.ndarray, path: str | os.PathLike, *, force: bool = False,
                   meta: dict | None = None) -> None:
    """Write ``hits`` with ``hit`` = ``flags`` (CSV) and its JSON summary, atomically."""
    flags = np.asarray(flags, dtype=bool)
    if flags.shape != (len(hits),):
        raise ValueError("one flag per frame is needed")
    out = HitList(hits.keys, hits.scores, hits.boxes, hits.threshold, {**hits.meta, **(meta or {})}, flags,
                  hits.status, hits.columns)
    out.write_csv(path, force=force)
