"""Splitting a detection over a job array (``detect --shard K/N``) and joining the parts.

A shard is a contiguous block of the selected frames in frame-key order: the same inputs
and ``--frames`` give every task the same list, and task K of N takes block K.  Each
part's JSON summary records the shard, the frames it had to score (as index ranges per
file), the weights' checksum and the preprocessing, so :func:`merge_parts` can refuse
parts that do not belong together and name any frame that is missing or scored twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.hits import HitList, join_columns, read_hits, summary_path

SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

#: (world size, rank) variables an MPI launcher sets in each process it starts
MPI_LAUNCH_VARIABLES = (("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),  # Open MPI's mpirun
                        ("PMI_SIZE", "PMI_RANK"))  # MPICH's Hydra mpiexec, Intel MPI, srun --mpi=pmi2


def mpi_launch(environ=None) -> tuple[int, int] | None:
    """``(rank, size)`` when an MPI launcher started this process as one of several ranks
    (from its environment, without loading MPI), else None."""
    environ = os.environ if environ is None else environ
    for size_name, rank_name in MPI_LAUNCH_VARIABLES:
        try:
            size = int(environ.get(size_name, ""))
            rank = int(environ.get(rank_name, "0"))
        except ValueError:
            continue
        if size > 1:
            return rank, size
    return None


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N (SLURM: ``--array=1-N`` and ``--shard $SLURM_ARRAY_TASK_ID/N``)."""
    match = SHARD.match(text or "")
    if not match:
        raise ConfigError(f"--shard {text!r} is not K/N (e.g. 3/8 for the third of eight parts)")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ConfigError(f"--shard {text}: K must be between 1 and N (counting from 1), and N at least 1")
    return k, n


def ranges(indices: np.ndarray) -> list[list[int]]:
    """Sorted indices as [start, stop, step] runs (a regular range is one run)."""
    out: list[list[int]] = []
    i = 0
    indices = np.asarray(indices, dtype=np.int64)
    while i < len(indices):
        if i + 1 == len(indices):
            out.append([int(indices[i]), int(indices[i]) + 1, 1])
            break
        step = int(indices[i + 1] - indices[i])
        j = i + 1
        while j + 1 < len(indices) and indices[j + 1] - indices[j] == step:
            j += 1
        out.append([int(indices[i]), int(indices[j]) + 1, step])
        i = j + 1
    return out


def expand(runs: list[list[int]]) -> np.ndarray:
    return np.concatenate([np.arange(a, b, s) for a, b, s in runs]) if runs else np.zeros(0, np.int64)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def merge_parts(paths: list[str]) -> tuple[HitList, dict]:
    """Join shard hit lists; every frame of every shard exactly once, parts consistent."""
    if not paths:
        raise InputError("no hit lists to merge")
    parts = [_read_part(path) for path in paths]
    first = parts[0][2]
    _check_same_detection(parts)
    _check_part_numbers(parts)
    problems = [problem for part in parts for problem in _coverage_problems(*part)]
    if problems:
        raise InputError("the parts do not cover the frames exactly once: " + "; ".join(problems[:5]))
    in_order = sorted(parts, key=lambda p: p[2]["shard"]["index"])
    merged = HitList([key for _, hits, _ in in_order for key in hits.keys],
                     np.concatenate([hits.scores for _, hits, _ in in_order]),
                     np.concatenate([hits.boxes for _, hits, _ in in_order]), float(first["threshold"]),
                     selected=np.concatenate([hits.hits for _, hits, _ in in_order]),  # a window narrows
                     status=np.concatenate([hits.status for _, hits, _ in in_order]),
                     columns=join_columns([hits for _, hits, _ in in_order]))
    if len(set(merged.keys)) != len(merged.keys):
        raise InputError("two parts score the same frames: were they made with different --frames or inputs?")
    meta = {k: v for k, v in first.items() if k not in ("threshold", "frames", "hits", "shard", "timing", "jobs")}
    if any("frame_checks" in p[2] for p in parts):  # the parts' counts add up
        from spidarknet.detection.local import FrameChecks
        meta["frame_checks"] = FrameChecks.from_dicts(p[2].get("frame_checks") for p in parts).to_dict()
    _summed_counts(parts, meta)
    meta["merged_from"] = [p[0] for p in in_order]
    return merged.sorted(), meta


def merge_to_file(parts: list[str], out: str, force: bool = False) -> HitList:
    """``spidarknet merge``: the parts' hit lists joined (:func:`merge_parts`) and written to ``out``."""
    hits, meta = merge_parts(list(parts))
    hits.meta.update(meta)
    hits.write_csv(out, force=force)
    return hits


def _read_part(path: str) -> tuple[str, HitList, dict]:
    """(path, hit list, summary) of one part written by ``detect --shard K/N``."""
    summary = summary_path(path)
    if not summary.is_file():
        raise InputError(f"{summary} is missing: merge needs the JSON summary detect writes beside {path}")
    meta = json.loads(summary.read_text())
    if "shard" not in meta:
        raise InputError(f"{path} was not written by 'detect --shard K/N'")
    return (path, read_hits(path), meta)


def _check_same_detection(parts: list[tuple[str, HitList, dict]]) -> None:
    """Refuse parts made with other weights, preprocessing, threshold or inputs than the first."""
    first = parts[0][2]
    for key, what in (("weights_sha256", "weights"), ("preprocessing", "preprocessing"),
                      ("threshold", "threshold"), ("inputs", "inputs"), ("size_range_nm", "--size-range"),
                      ("icosahedron", "--icosahedron"), ("selector", "--selector")):
        for path, _, meta in parts[1:]:
            if _decision_key(meta.get(key), key) != _decision_key(first.get(key), key):
                raise InputError(f"{path} was made with other {what} than {parts[0][0]}: refusing to merge parts "
                                 "of different detections")


def _decision_key(value, key: str):
    """What must agree between parts (a selector's file and rule, not how many frames it fitted)."""
    if key == "selector" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "fitted"}
    return value


def _summed_counts(parts: list[tuple[str, HitList, dict]], meta: dict) -> None:
    """The window's and the selector's counts of the parts added up in ``meta``."""
    for key in ("size_fit_failed", "size_second_particle"):
        if key in meta:
            meta[key] = sum(int(p[2].get(key, 0)) for p in parts)
    if isinstance(meta.get("selector"), dict) and "fitted" in meta["selector"]:
        meta["selector"] = {**meta["selector"], "fitted": sum(int(p[2]["selector"].get("fitted", 0)) for p in parts)}


def _check_part_numbers(parts: list[tuple[str, HitList, dict]]) -> None:
    """Refuse parts of different counts, a part given twice, or parts missing."""
    n = parts[0][2]["shard"]["count"]
    seen: dict[int, str] = {}
    for path, _, meta in parts:
        if meta["shard"]["count"] != n:
            raise InputError(f"{path} is part {meta['shard']['index']}/{meta['shard']['count']} but "
                             f"{parts[0][0]} is one of {n}")
        k = meta["shard"]["index"]
        if k in seen:
            raise InputError(f"part {k}/{n} is given twice: {seen[k]} and {path}")
        seen[k] = path
    missing_parts = [k for k in range(1, n + 1) if k not in seen]
    if missing_parts:
        shown = ", ".join(f"{k}/{n}" for k in missing_parts[:10])
        raise InputError(f"{len(missing_parts)} of {n} parts are missing: {shown}")


def _coverage_problems(path: str, hits: HitList, meta: dict) -> list[str]:
    """How one part's frames differ from those its shard should hold (none when they match)."""
    problems = []
    got: dict[str, set[int]] = {}
    for key in hits.keys:
        got.setdefault(key.file, set()).add(key.index)
    if sum(len(v) for v in got.values()) != len(hits.keys):
        problems.append(f"{path} scores some frames twice")
    for file, runs in meta["shard"]["expected"].items():
        want = set(expand(runs).tolist())
        lost = sorted(want - got.get(file, set()))
        if lost:
            problems.append(f"{path} lacks {len(lost)} frames of {file}, e.g. index {lost[0]}")
    extra = {f for f in got if f not in meta["shard"]["expected"]}
    if extra:
        problems.append(f"{path} holds frames of files outside its shard: {sorted(extra)[:2]}")
    return problems
