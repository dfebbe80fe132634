"""A hit list's selection as written: its ``hit`` column, which may be narrower than
``score >= threshold`` (``spidarknet select`` also applies a size window).

:func:`read_selected` returns the hit list with that column; :func:`write_selected`
writes a hit list whose ``hit`` column is given explicitly, with its JSON summary.
"""

from __future__ import annotations

import os

import numpy as np

from spidarknet.hits import HitList, read_hits


def read_selected(path: str | os.PathLike) -> tuple[HitList, np.ndarray]:
    """The hit list and its ``hit`` column (bool, row order)."""
    hits = read_hits(path)
    return hits, hits.hits


def write_selected(hits: HitList, flags: np.ndarray, path: str | os.PathLike, *, force: bool = False,
                   meta: dict | None = None) -> None:
    """Write ``hits`` with ``hit`` = ``flags`` (CSV) and its JSON summary, atomically."""
    flags = np.asarray(flags, dtype=bool)
    if flags.shape != (len(hits),):
        raise ValueError("one flag per frame is needed")
    out = HitList(hits.keys, hits.scores, hits.boxes, hits.threshold, {**hits.meta, **(meta or {})}, flags,
                  hits.status)
    out.write_csv(path, force=force)
