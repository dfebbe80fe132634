"""Where a selection goes right and wrong: its counts per category of frame and per photon count.

``--by /truth/kind`` (a per-frame dataset in the frame files, text or numbers) or ``--by
kind`` (a column of the ``--truth`` CSV) splits the judged frames into categories; for each
one: the frames, how many of them the hit list selected (its own selection, the ``hit``
column) and what share, the positives and, where there are positives, the recall.  Numbers
with more than :data:`MAX_CATEGORIES` distinct values (a diameter, say) are grouped into
:data:`RANGE_BINS` ranges that hold about equal numbers of frames.

Photon-count bins: each frame's photon count (``--photons-dataset``; by default
``/truth/photons`` when every frame file has it, as the simulator writes it: all photons on
the detector in that frame, background included) in bins on a log scale with the edges
:data:`PHOTON_EDGES` (< 1e3, 1e3-3e3, 3e3-1e4, 1e4-3e4, >= 3e4 photons per frame); for each
bin the confusion counts, precision where the bin has selected frames and, where it holds
positives, recall and F1.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Sequence

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.keys import describe_keys, match_keys
from spidarknet.core.selection import csv_header, read_selection
from spidarknet.frames.source import list_datasets, open_h5, reading
from spidarknet.judge.truth import truth_file
from spidarknet.hits import HitList
from spidarknet.judge.evaluation import selection_confusion
from spidarknet.judge.truth import Truth

#: the simulator's per-frame photon count, used when the files have it and no other is named
DEFAULT_PHOTONS_DATASET = "/truth/photons"
#: photons per frame, bin edges (log scale): < 1e3, 1e3-3e3, 3e3-1e4, 1e4-3e4, >= 3e4
PHOTON_EDGES = (1e3, 3e3, 1e4, 3e4)
#: numbers with more distinct values than this are grouped into ranges
MAX_CATEGORIES = 24
#: ranges (of about equal frame counts) for such numbers
RANGE_BINS = 8


# -- reading the values ------------------------------------------------------------------------

def _per_frame_datasets(handle, n_frames: int) -> str:
    """The 1-D datasets of an open file with at least ``n_frames`` entries, for messages."""
    names = sorted(p for p, shape in list_datasets(handle, min_ndim=1)
                   if len(shape) == 1 and shape[0] >= n_frames)
    if not names:
        return "it has no 1-D dataset with one value per frame"
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return f"its per-frame datasets: {shown}"


def _rows_by_file(hits: HitList) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = defaultdict(list)
    for row, key in enumerate(hits.keys):
        rows[key.file].append(row)
    return rows


def has_frame_dataset(hits: HitList, dataset: str) -> bool:
    """Whether every frame file the hit list names has ``dataset`` with a value per frame."""
    for path, rows in _rows_by_file(hits).items():
        if not os.path.exists(path):
            return False
        with open_h5(truth_file(path)) as handle:
            ds = handle.get(dataset)
            need = max(hits.keys[r].index for r in rows) + 1
            if getattr(ds, "ndim", None) != 1 or ds.shape[0] < need:
                return False
    return True


def read_frame_values(hits: HitList, dataset: str, option: str) -> np.ndarray:
    """One value per hit-list frame, from the per-frame dataset ``dataset`` of the files it
    names; ``option`` (e.g. ``--by``) starts the error messages."""
    parts, order = [], []
    for path, rows in _rows_by_file(hits).items():
        if not os.path.exists(path):
            raise InputError(f"{option} {dataset}: the frame file {path} named in the hit list does not "
                             "exist; the values are read from it")
        index = np.array([hits.keys[r].index for r in rows], dtype=np.int64)
        with open_h5(truth_file(path)) as handle:
            ds = handle.get(dataset)
            if getattr(ds, "ndim", None) != 1 or ds.shape[0] <= index.max():
                found = ("no such dataset" if ds is None else
                         f"{dataset} there has shape {getattr(ds, 'shape', '(a group)')}, not one value per frame")
                raise InputError(f"{option} {dataset}: {os.path.basename(path)} has {found}; "
                                 f"{_per_frame_datasets(handle, int(index.max()) + 1)}")
            with reading(path, f"{option} {dataset}"):
                values = np.asarray(ds[()])
        parts.append(values[index])
        order.extend(rows)
    joined = np.concatenate(parts)
    out = np.empty_like(joined)
    out[np.asarray(order)] = joined
    return out


def category_values(truth: Truth, name: str, truth_csv: str | None = None) -> tuple[np.ndarray, str]:
    """The ``--by NAME`` value of every judged frame, and where it came from: a column of
    the truth CSV when it has one of that name, else a per-frame dataset of the frame files."""
    keys = truth.hits.keys
    header = csv_header(truth_csv) if truth_csv else []
    if truth_csv and name.lower() in header and {"file", "index"} <= set(header):
        table = {(e.file, e.index): e.value for e in read_selection(truth_csv, value_column=name.lower())}
        found, missing = match_keys([(k.file, k.index) for k in keys], table)
        if missing:
            raise InputError(f"--by {name}: {len(missing)} of the {len(keys)} judged frames have no row in "
                             f"{truth_csv} ({describe_keys(missing)}); give every frame a value")
        return np.asarray(found, dtype=str), f"column of {truth_csv}"
    try:
        return read_frame_values(truth.hits, name, "--by"), "dataset in the frame files"
    except InputError as exc:
        if not truth_csv:
            raise
        columns = ", ".join(header) if header else "no header row"
        raise InputError(f"{exc}; nor is it a column of {truth_csv} (its columns: {columns})") from None


# -- categories --------------------------------------------------------------------------------

def _edge_text(value: float) -> str:
    """1000 -> 1e3, 2500 -> 2.5e3, 500 -> 500."""
    text = f"{value:.3g}"
    return text.replace("e+0", "e").replace("e+", "e")


def categorise(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Category names (sorted) and each value's category number.

    Text (bytes or str) and numbers with at most :data:`MAX_CATEGORIES` distinct values are
    categories as they are; other numbers are grouped into ranges of about equal counts."""
    values = np.asarray(values)
    if values.dtype.kind == "O" or values.dtype.kind == "S":
        values = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                           for v in values.ravel()], dtype=str)
    if values.dtype.kind == "U":
        try:                                  # CSV text that is all numbers is numbers
            values = values.astype(np.float64)
        except ValueError:
            names, codes = np.unique(np.char.strip(values), return_inverse=True)
            return [str(n) for n in names], codes.ravel()
    if values.dtype.kind not in "biuf":
        raise InputError(f"cannot group frames by values of type {values.dtype}; use text or numbers")
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    distinct = np.unique(values[finite])
    if len(distinct) <= MAX_CATEGORIES:
        names = [f"{v:g}" for v in distinct]
        codes = np.searchsorted(distinct, values)
    else:
        quantiles = np.quantile(values[finite], np.linspace(0, 1, RANGE_BINS + 1)[1:-1])
        inner = np.unique([float(f"{q:.3g}") for q in quantiles])   # round edges, 3 digits
        edges = [distinct[0], *inner, distinct[-1]]
        names = [f"{_edge_text(lo)}-{_edge_text(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
        codes = np.searchsorted(inner, values, side="right")
    if not finite.all():
        names.append("n/a")
        codes = np.where(finite, codes, len(names) - 1)
    return names, np.asarray(codes, dtype=np.int64)


def by_category(values: np.ndarray, labels: np.ndarray, selected: np.ndarray, source: str) -> dict:
    """Frames, selected (count and share), positives and recall per category."""
    labels = np.asarray(labels, dtype=bool)
    selected = np.asarray(selected, dtype=bool)
    names, codes = categorise(values)
    rows = []
    for k, name in enumerate(names):
        member = codes == k
        n, chosen = int(member.sum()), int((member & selected).sum())
        positives, found = int((member & labels).sum()), int((member & labels & selected).sum())
        rows.append({"category": name, "frames": n, "selected": chosen,
                     "selected_share": chosen / n if n else float("nan"), "positives": positives,
                     "selected_positives": found, "recall": found / positives if positives else float("nan")})
    return {"source": source, "frames": int(len(labels)), "selected": int(selected.sum()),
            "positives": int(labels.sum()), "categories": rows}


# -- photon-count bins -------------------------------------------------------------------------

def _bin_text(low: float | None, high: float | None) -> str:
    if low is None:
        return f"< {_edge_text(high)}"
    if high is None:
        return f">= {_edge_text(low)}"
    return f"{_edge_text(low)}-{_edge_text(high)}"


def check_photon_edges(edges: Sequence[float]) -> tuple[float, ...]:
    edges = tuple(float(e) for e in edges)
    if not edges or not all(math.isfinite(e) and e > 0 for e in edges) or list(edges) != sorted(set(edges)):
        raise ConfigError(f"--photon-bins {' '.join(f'{e:g}' for e in edges)}: give increasing positive "
                          "edges in photons per frame, e.g. 1e3 3e3 1e4 3e4")
    return edges


def by_photons(photons: np.ndarray, labels: np.ndarray, selected: np.ndarray, source: str,
               edges: Sequence[float] = PHOTON_EDGES) -> dict:
    """Confusion counts, precision, recall and F1 per photon-count bin (photons per frame)."""
    edges = check_photon_edges(edges)
    photons = np.asarray(photons)
    if photons.dtype.kind not in "biuf":
        raise InputError(f"the photon counts ({source}) hold {photons.dtype} values, not numbers; "
                         "name a per-frame photon count with --photons-dataset")
    photons = photons.astype(np.float64)
    labels = np.asarray(labels, dtype=bool)
    selected = np.asarray(selected, dtype=bool)
    finite = np.isfinite(photons)
    codes = np.where(finite, np.searchsorted(edges, photons, side="right"), -1)
    bounds = [(None, edges[0]), *zip(edges[:-1], edges[1:]), (edges[-1], None)]
    groups = [(_bin_text(low, high), low, high, codes == k) for k, (low, high) in enumerate(bounds)]
    if not finite.all():
        groups.append(("no count", None, None, ~finite))
    bins = []
    for text, low, high, member in groups:
        c = selection_confusion(selected[member], labels[member], float("nan"))
        positives = c.tp + c.fn
        bins.append({"photons": text, "low": low, "high": high, "frames": int(member.sum()),
                     "positives": positives, "selected": c.tp + c.fp, "tp": c.tp, "fp": c.fp, "tn": c.tn,
                     "fn": c.fn, "precision": c.precision if c.tp + c.fp else float("nan"), "recall": c.recall,
                     "f1": c.f1 if positives else float("nan")})
    return {"source": source, "unit": "photons per frame", "edges": list(edges), "bins": bins}


# -- both, for a command -----------------------------------------------------------------------

def breakdowns(truth: Truth, selected: np.ndarray, *, by: Sequence[str] = (), truth_csv: str | None = None,
               photons_dataset: str | None = None, photon_edges: Sequence[float] = PHOTON_EDGES) -> dict:
    """The ``by`` and ``photon_bins`` sections of an evaluation for the judged frames of
    ``truth`` (``selected``: their selection).  Photons come from ``photons_dataset``, else
    from :data:`DEFAULT_PHOTONS_DATASET` when every frame file has it (else no section)."""
    edges = check_photon_edges(photon_edges)
    out: dict = {}
    if by:
        out["by"] = {}
        for name in by:
            values, source = category_values(truth, name, truth_csv)
            out["by"][name] = by_category(values, truth.labels, selected, source)
    if photons_dataset is None and has_frame_dataset(truth.hits, DEFAULT_PHOTONS_DATASET):
        photons_dataset = DEFAULT_PHOTONS_DATASET
    if photons_dataset:
        photons = read_frame_values(truth.hits, photons_dataset, "--photons-dataset")
        out["photon_bins"] = by_photons(photons, truth.labels, selected,
                                        f"dataset {photons_dataset} in the frame files", edges)
    return out


def _f(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def breakdown_text(result: dict) -> str:
    """The ``by`` and ``photon_bins`` sections of ``result`` as tables for people ('' if none)."""
    lines = []
    for name, section in result.get("by", {}).items():
        rows = section["categories"]
        width = max([len("category")] + [len(r["category"]) for r in rows] + [len("all")])
        lines.append(f"by {name} ({section['source']}):")
        lines.append(f"  {'category':<{width}}  frames  selected   share  positives  recall")
        for r in rows + [{"category": "all", "frames": section["frames"], "selected": section["selected"],
                          "selected_share": section["selected"] / max(section["frames"], 1),
                          "positives": section["positives"],
                          "recall": (sum(x["selected_positives"] for x in rows) / section["positives"]
                                     if section["positives"] else float("nan"))}]:
            lines.append(f"  {r['category']:<{width}}  {r['frames']:>6}  {r['selected']:>8}  "
                         f"{100 * r['selected_share']:>5.1f} %  {r['positives']:>9}  {_f(r['recall']):>6}")
    photons = result.get("photon_bins")
    if photons:
        lines.append(f"by photons per frame ({photons['source']}; bin edges "
                     f"{', '.join(_edge_text(e) for e in photons['edges'])}):")
        lines.append(f"  {'photons':<9}  frames  positives  selected    TP    FP    FN  precision  recall     F1")
        for b in photons["bins"]:
            lines.append(f"  {b['photons']:<9}  {b['frames']:>6}  {b['positives']:>9}  {b['selected']:>8}  "
                         f"{b['tp']:>4}  {b['fp']:>4}  {b['fn']:>4}  {_f(b['precision']):>9}  "
                         f"{_f(b['recall']):>6}  {_f(b['f1']):>5}")
    return "\n".join(lines)
