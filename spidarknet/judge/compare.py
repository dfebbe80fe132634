"""Selections side by side: how many frames each selects, and how far they agree.

Each input is a hit list (its rows with ``hit`` = 1 are its selection) or a plain
selection CSV (``file,index`` rows, header optional).  Frames are matched by
(file base name or absolute path, index), see :mod:`spidarknet.core.keys`.  For every
pair: the intersection, the union and the Jaccard index ``|A ∩ B| / |A ∪ B|``.

Beside the counts, :func:`compare_structures` judges each selection by the 3D structure it
gives (one reconstruction folder per selection, see :mod:`spidarknet.judge.structure`): against the
truth intensity of a simulated sample, or half set against half set, and ranks them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.keys import Canon, MatchKey
from spidarknet.core.outputs import atomic_path, json_ready
from spidarknet.hits import read_any_selection


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
    """A hit list (rows with hit = 1) or a plain selection CSV (:func:`~spidarknet.hits.read_any_selection`)."""
    written = read_any_selection(path)
    return Selection(name or Path(path).stem, path, written.kind, written.frames,
                     scored=None if written.hits is None else len(written.hits))


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


def write_comparison(result: Comparison, path: str, force: bool = False,
                     structure: "StructureComparison | None" = None) -> None:
    """``.json`` (everything, with ``structure`` under its key when given) or ``.csv`` (one
    row per pair)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ConfigError(f"--out {path}: give a .csv or .json file name")
    with atomic_path(path, force, "comparison table") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            if suffix == ".json":
                data = result.to_dict()
                if structure is not None:
                    data["structure"] = structure.to_dict()
                json.dump(json_ready(data), handle, indent=2, allow_nan=False)
                handle.write("\n")
            else:
                writer = csv.writer(handle)
                writer.writerow(["a", "b", "n_a", "n_b", "intersection", "union", "jaccard"])
                for p in result.pairs:
                    writer.writerow([p["a"], p["b"], p["n_a"], p["n_b"], p["intersection"], p["union"],
                                     f"{p['jaccard']:.4f}" if p["union"] else ""])


# -- structure: the reconstructions of the selections ----------------------------------------------

@dataclass
class StructureComparison:
    """Each selection's reconstruction judged (against the truth, or half against half),
    and the selections ranked by structure (:func:`spidarknet.judge.structure.rank`)."""

    judgements: list            # StructureJudgement, one per selection
    order: list[int]            # best first
    q_points: list[float]       # the q (nm⁻¹) the table shows the per-shell figure at
    reference: str              # "truth" or "halves"

    def to_dict(self) -> dict:
        lo, hi = self.q_range()
        return {"reference": self.reference, "rank": [self.judgements[i].name for i in self.order],
                "ranked_by": f"{self.rank_what()} over q {lo:.4g}-{hi:.4g} nm⁻¹ (shells all measured), "
                             "ties by resolution",
                "q_points_inv_nm": self.q_points,
                "selections": [dict(j.to_dict(), rank=self.order.index(i) + 1,
                                    rank_figure=j.rank_figure(*self.q_range()),
                                    cc_at_q=[j.shells.at(q) for q in self.q_points],
                                    contrast_at_q=[j.shells.contrast_at(q) for q in self.q_points])
                               for i, j in enumerate(self.judgements)]}

    def q_range(self) -> tuple[float, float]:
        from spidarknet.judge.structure import common_range
        return common_range(self.judgements)

    def has_contrast(self) -> bool:
        return self.reference == "truth" and self.judgements[0].shells.method == "pearson"

    def rank_what(self) -> str:
        return "mean per-shell contrast" if self.has_contrast() else "mean per-shell CC"

    def table(self) -> str:
        """Frames, the per-shell figure at a few q, mean, resolution and rank, for people."""
        contrast = self.has_contrast()
        head = (["rank", "selection", "frames"] + [f"CC@{q:.3g}" for q in self.q_points] + ["mean CC"]
                + (["mean contrast"] if contrast else []) + ["resolution q (nm⁻¹)", "d=2π/q (nm)"])
        rows = []
        lo, hi = self.q_range()
        for pos, i in enumerate(self.order, 1):
            j = self.judgements[i]
            res = j.resolution
            rows.append([str(pos), j.name, "" if j.n_frames is None else str(j.n_frames)]
                        + [f"{j.shells.at(q):.3f}" for q in self.q_points]
                        + [f"{j.figure(lo, hi):.3f}"] + ([f"{j.contrast(lo, hi):.3f}"] if contrast else [])
                        + [("≥" if res.reached_edge else "") + f"{res.q_inv_nm:.3f}",
                           ("≤" if res.reached_edge else "") + f"{res.d_nm:.1f}"])
        widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
        lines += ["  ".join(v.ljust(w) if c == 1 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths)))
                  for r in rows]
        j0 = self.judgements[0]
        what = ("Pearson CC per shell" if j0.shells.method == "pearson" else
                f"radial-band CC (log radial profiles within ±{j0.shells.band} shells)")
        against = "the truth intensity" if self.reference == "truth" else "half 1 vs half 2 (half-set CC)"
        lines.append(f"structure: {what} against {against}; resolution where it first drops below "
                     f"{j0.resolution.threshold:g}; ranked by the {self.rank_what()} over q {lo:.3f}-{hi:.3f} nm⁻¹"
                     + (" (contrast: the share of the truth's anisotropy reproduced, 1 = all)" if contrast else ""))
        return "\n".join(lines)

    def markdown(self) -> str:
        """The report: the table, then every selection's shells."""
        out = ["# Selections judged by their structure", "", "```", self.table(), "```", ""]
        for i in self.order:
            j = self.judgements[i]
            out += [f"## {j.name}", "", j.line(), ""]
            if j.note:
                out += [f"*{j.note}*", ""]
            if j.alignment:
                out += [f"aligned in {j.alignment['seconds']:.1f} s (mean shell correlation "
                        f"{j.alignment['score']:.3f} on the alignment shells)", ""]
            out += ["| q (nm⁻¹) | d = 2π/q (nm) | CC | contrast | voxels |", "| ---: | ---: | ---: | ---: | ---: |"]
            for r in j.shells.rows():
                if r["n_voxels"] and math.isfinite(r["cc"]):
                    k = f"{r['contrast']:.3f}" if math.isfinite(r["contrast"]) else ""
                    out.append(f"| {r['q_inv_nm']:.4f} | {r['d_nm']:.1f} | {r['cc']:.3f} | {k} | {r['n_voxels']} |")
            out.append("")
        return "\n".join(out)


def _frames_of(selection: Selection, truth_path: str) -> list[int]:
    """Indices of the selection's frames that lie in the simulated file ``truth_path`` (names
    matched by the rule of :class:`~spidarknet.core.keys.FileResolver`)."""
    truth_path = os.path.abspath(truth_path)
    canon = Canon([f for f, _ in selection.frames] + [truth_path])
    target, _ = canon(truth_path, 0)
    return [int(i) for f, i in selection.frames if canon(f, i)[0] == target]


def compare_structures(selections: list[Selection], recon_folders: list[str], truth: str | None = None, *,
                       method: str = "pearson", threshold: float = 0.5, n_points: int = 4
                       ) -> StructureComparison:
    """Judge each selection's reconstruction: against the truth of the simulated file
    ``truth`` (the particle of its settings, at the true sizes of the selection's single
    hits), or without truth half 1 against half 2 (``method`` "pearson", or "radial-band" for
    spheres)."""
    from spidarknet.judge.structure import judge_halves, judge_selection, truth_from_simulation

    if len(recon_folders) != len(selections):
        raise ConfigError(f"--recon gives {len(recon_folders)} folders for {len(selections)} selections; "
                          "give one reconstruction folder per selection, in the same order")
    judgements = []
    for s, folder in zip(selections, recon_folders):
        n = len(s.keys) if s.keys else len(s.frames)
        if truth is not None:
            model = truth_from_simulation(truth, _frames_of(s, truth))
            judgements.append(judge_selection(folder, model, name=s.name, threshold=threshold, n_frames=n))
        else:
            judgements.append(judge_halves(folder, name=s.name, method=method, threshold=threshold, n_frames=n))
    from spidarknet.judge.structure import common_range, rank
    lo, hi = common_range(judgements)
    q_points = [float(lo + (hi - lo) * f) for f in np.linspace(0.0, 1.0, n_points + 1)[1:]]
    return StructureComparison(judgements, rank(judgements), q_points, "truth" if truth else "halves")


def write_structure(result: StructureComparison, out_dir: str, force: bool = False) -> None:
    """``out_dir/structure.json`` (everything) and ``out_dir/structure.md`` (the report)."""
    from spidarknet.core.outputs import staged_dir

    with staged_dir(out_dir, force) as stage:
        with open(stage / "structure.json", "w", encoding="utf-8") as handle:
            json.dump(json_ready(result.to_dict()), handle, indent=2, allow_nan=False)
            handle.write("\n")
        (stage / "structure.md").write_text(result.markdown() + "\n", encoding="utf-8")
