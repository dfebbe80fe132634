"""A hit list's selection as written: its ``hit`` column, which may be narrower than
``score >= threshold`` (``spidarknet select`` also applies a size window).

:func:`read_selected` returns the hit list with that column; :func:`write_selected`
writes a hit list whose ``hit`` column is given explicitly, with its JSON summary.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from spidarknet.errors import InputError
from spidarknet.hits import COLUMNS, HitList, read_hits, summary_path
from spidarknet.outputs import atomic_path


def read_selected(path: str | os.PathLike) -> tuple[HitList, np.ndarray]:
    """The hit list and its ``hit`` column (bool, row order); without that column the
    selection is ``score >= threshold``."""
    hits = read_hits(path)
    flags = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if "hit" not in (reader.fieldnames or []):
            return hits, hits.hits
        for number, row in enumerate(reader, start=2):
            try:
                flags.append(float(row["hit"] or 0) != 0)
            except ValueError:
                raise InputError(f"{path}:{number}: the hit column must be 0 or 1") from None
    if len(flags) != len(hits):
        raise InputError(f"{path} changed while it was read; try again")
    return hits, np.asarray(flags, dtype=bool)


def write_selected(hits: HitList, flags: np.ndarray, path: str | os.PathLike, *, force: bool = False,
                   meta: dict | None = None) -> None:
    """Write ``hits`` with ``hit`` = ``flags`` (CSV) and its JSON summary, atomically."""
    flags = np.asarray(flags, dtype=bool)
    if flags.shape != (len(hits),):
        raise ValueError("one flag per frame is needed")
    with atomic_path(path, force, "hit list") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for key, score, box, flag in zip(hits.keys, hits.scores, hits.boxes, flags):
                writer.writerow([key.file, key.dataset, key.index, f"{score:.6f}",
                                 *(f"{v:.1f}" for v in box), int(flag)])
    summary = {"threshold": hits.threshold, "frames": len(hits), "hits": int(flags.sum()),
               **hits.meta, **(meta or {})}
    with atomic_path(summary_path(path), True, "hit list summary") as tmp:
        with open(tmp, "w") as handle:
            from spidarknet.report.evaluation import json_ready
            json.dump(json_ready(summary), handle, indent=2, allow_nan=False)
            handle.write("\n")
