"""Selections side by side: how many frames each selects, and how far they agree.

Each input is a hit list (its rows with ``hit`` = 1 are its selection) or a plain
selection CSV (``file,index`` rows, header optional).  Frames are matched by
(file base name or absolute path, index), see :mod:`spidarknet.report.keys`.  For every
pair: the intersection, the union and the Jaccard index ``|A ∩ B| / |A ∪ B|``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from spidarknet.errors import ConfigError, InputError
from spidarknet.outputs import atomic_path
from spidarknet.report.keys import Canon, MatchKey
from spidarknet.hits import read_hits
from spidarknet.selection import read_selection


@dataclass
class Selection:
    """The frames one list selects (file names as written in it)."""

    name: str
    path: str
    kind: str                              # "hit list" or "selection"
    frames: list[tuple[str, int]]          # (file, index) as written
    scored: int | None = None              # hit lists: frames scored
    keys: set[MatchKey] = field(default_factory=set)  # after matching


def read_selection_like(path: str, name: str | None = None) -> Selection:
    """A hit list (rows with hit = 1) or a plain selection CSV, told apart by the header."""
    if not os.path.isfile(path):
        raise InputError(f"{path} does not exist")
    try:
        with open(path, newline="") as handle:
            first = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    header = [c.strip().lower() for c in first]
    name = name or Path(path).stem
    if "score" in header and "hit" in header:
        hits = read_hits(path)
        frames = [(k.file, k.index) for k in hits.selected_keys()]
        return Selection(name, path, "hit list", frames, scored=len(hits))
    entries = read_selection(path)
    return Selection(name, path, "selection", [(e.file, e.index) for e in entries])


@dataclass
class Comparison:
    selections: list[Selection]
    pairs: list[dict]           # a, b, n_a, n_b, intersection, union, jaccard
    common_to_all: int

    def matrix(self) -> list[list[int]]:
        """Intersections, ``[i][j]`` = frames selected by both i and j (diagonal: by i)."""
        n = len(self.selections)
        out = [[0] * n for _ in range(n)]
        for i, s in enumerate(self.selections):
            out[i][i] = len(s.keys)
        for p in self.pairs:
            out[p["i"]][p["j"]] = out[p["j"]][p["i"]] = p["intersection"]
        return out

    def to_dict(self) -> dict:
        return {"selections": [{"name": s.name, "path": s.path, "kind": s.kind, "selected": len(s.keys),
                                "scored": s.scored} for s in self.selections],
                "pairs": [{k: v for k, v in p.items() if k not in ("i", "j")} for p in self.pairs],
                "intersection_matrix": self.matrix(), "selected_by_all": self.common_to_all}

    def table(self) -> str:
        """The table printed for people: counts, then intersections (Jaccard) per pair."""
        names = [s.name for s in self.selections]
        matrix = self.matrix()
        jac = {(p["i"], p["j"]): p["jaccard"] for p in self.pairs}
        cells = []
        for i, s in enumerate(self.selections):
            row = []
            for j in range(len(names)):
                if i == j:
                    row.append("-")
                else:
                    a, b = min(i, j), max(i, j)
                    row.append(f"{matrix[i][j]} ({jac[(a, b)]:.2f})")
            scored = f" of {s.scored}" if s.scored is not None else ""
            cells.append([s.name, f"{len(s.keys)}{scored}"] + row)
        head = ["selection", "selected"] + [f"∩ {n} (Jaccard)" for n in names]
        widths = [max(len(r[c]) for r in cells + [head]) for c in range(len(head))]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
        for r in cells:
            lines.append("  ".join(v.ljust(w) if c == 0 else v.rjust(w)
                                   for c, (v, w) in enumerate(zip(r, widths))))
        if len(names) > 2:
            lines.append(f"selected by all {len(names)}: {self.common_to_all}")
        return "\n".join(lines)


def compare(selections: list[Selection]) -> Comparison:
    """Match the selections' frames and count the pairwise agreements."""
    if len(selections) < 2:
        raise InputError("compare needs at least two selections")
    names = [s.name for s in selections]
    if len(set(names)) != len(names):
        raise ConfigError(f"the selections' names must differ ({', '.join(names)}); give --names")
    canon = Canon([f for s in selections for f, _ in s.frames])
    for s in selections:
        s.keys = {canon(f, i) for f, i in s.frames}
    pairs = []
    for i, j in combinations(range(len(selections)), 2):
        a, b = selections[i].keys, selections[j].keys
        inter, union = len(a & b), len(a | b)
        pairs.append({"i": i, "j": j, "a": selections[i].name, "b": selections[j].name,
                      "n_a": len(a), "n_b": len(b), "intersection": inter, "union": union,
                      "jaccard": inter / union if union else float("nan")})
    common = set.intersection(*(s.keys for s in selections))
    return Comparison(selections, pairs, len(common))


def write_comparison(result: Comparison, path: str, force: bool = False) -> None:
    """``.json`` (everything) or ``.csv`` (one row per pair)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ConfigError(f"--out {path}: give a .csv or .json file name")
    with atomic_path(path, force, "comparison table") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            if suffix == ".json":
                from spidarknet.report.evaluation import json_ready
                json.dump(json_ready(result.to_dict()), handle, indent=2, allow_nan=False)
                handle.write("\n")
            else:
                writer = csv.writer(handle)
                writer.writerow(["a", "b", "n_a", "n_b", "intersection", "union", "jaccard"])
                for p in result.pairs:
                    writer.writerow([p["a"], p["b"], p["n_a"], p["n_b"], p["intersection"], p["union"],
                                     f"{p['jaccard']:.4f}" if p["union"] else ""])
