"""Selections: lists of frame keys in CSV files (``file,index`` or ``file,dataset,index``).

A selection names frames by file path and index; files are matched against the inputs by
the one rule of :class:`spidarknet.core.keys.FileResolver` (real path, else a base name
unique among the inputs; an ambiguous base name is an error naming the candidates).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.core.keys import FileResolver


@dataclass(frozen=True)
class SelectionEntry:
    file: str
    index: int
    dataset: str | None = None
    value: str | None = None  # an extra column (a label), when the caller asks for one


def csv_header(path: str) -> list[str]:
    """The first row of a CSV that is not a ``#`` comment, stripped and lower-case (``[]``
    for an empty file): the header, if the file has one."""
    try:
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                if row and not row[0].lstrip().startswith("#"):
                    return [c.strip().lower() for c in row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return []


def read_selection(path: str, value_column: str | None = None) -> list[SelectionEntry]:
    """Entries of a selection CSV; a header row naming ``file`` and ``index`` is optional."""
    if not os.path.exists(path):
        raise InputError(f"selection file {path} does not exist")
    try:
        with open(path, newline="") as handle:
            rows = [r for r in csv.reader(handle) if r and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read selection {path}: {exc}") from None
    if not rows:
        raise InputError(f"selection {path} is empty")
    header = [c.strip().lower() for c in rows[0]]
    if "file" in header and "index" in header:
        columns = {name: header.index(name) for name in header}
        rows = rows[1:]
    else:
        columns = {"file": 0, "index": len(rows[0]) - 1 if value_column is None else 1}
        if value_column is not None:
            columns[value_column] = 2
        elif len(rows[0]) == 3:
            columns = {"file": 0, "dataset": 1, "index": 2}
    if value_column is not None and value_column not in columns:
        raise InputError(f"selection {path} has no {value_column!r} column (header: {','.join(header)})")
    entries = []
    for number, row in enumerate(rows, start=2 if "file" in header else 1):
        try:
            index = int(row[columns["index"]])
            if index < 0:
                raise ValueError
            entries.append(SelectionEntry(
                file=row[columns["file"]].strip(), index=index,
                dataset=row[columns["dataset"]].strip() if "dataset" in columns else None,
                value=row[columns[value_column]].strip() if value_column else None))
        except (ValueError, IndexError):
            raise InputError(f"{path}:{number}: expected file,index with a non-negative integer index, "
                             f"found {','.join(row)!r}") from None
    return entries


def group_entries(entries: list[SelectionEntry], resolver: FileResolver, n_frames: dict[str, int],
                  source: str) -> dict[str, np.ndarray]:
    """Indices per input path; unknown or ambiguous files or out-of-range indices are an error
    naming them."""
    grouped: dict[str, list[int]] = defaultdict(list)
    unknown_files: dict[str, int] = defaultdict(int)
    out_of_range = []
    for entry in entries:
        try:
            path = resolver.resolve(entry.file)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        if path is None:
            unknown_files[entry.file] += 1
            continue
        if entry.index >= n_frames[path]:
            out_of_range.append(f"{os.path.basename(path)}:{entry.index}")
            continue
        grouped[path].append(entry.index)
    if unknown_files:
        names = ", ".join(f"{k} ({v} frames)" for k, v in list(unknown_files.items())[:3])
        raise InputError(f"{source} names frames of files that are not among the inputs: {names}")
    if out_of_range:
        shown = ", ".join(out_of_range[:5])
        raise InputError(f"{source} names {len(out_of_range)} frames that do not exist "
                         f"(index beyond the file's last frame): {shown}")
    return {p: np.unique(np.asarray(v, dtype=np.int64)) for p, v in grouped.items()}
