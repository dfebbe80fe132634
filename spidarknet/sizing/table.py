"""The size table: one CSV row per frame, written and read back."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from spidarknet.core.errors import InputError
from spidarknet.core.outputs import atomic_path
from spidarknet.sizing.frame_fit import SizeResult


SIZE_COLUMNS = ["file", "dataset", "index", "diameter_nm", "diameter_err_nm", "fit_quality", "misfit",
                "second_particle_z", "ok", "reason", "signal_photons", "background_photons_per_pixel", "centre_x_px",
                "centre_y_px", "second_particle_cut"]


def write_sizes_csv(results: Sequence[SizeResult], path: str | os.PathLike, force: bool = False) -> None:
    """``file,dataset,index,diameter_nm,diameter_err_nm,fit_quality,ok,reason,...``: one row
    per frame, failed fits included (empty diameter, ``ok`` 0 and the reason)."""
    with atomic_path(path, force, "size table") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(SIZE_COLUMNS)
            for result in results:
                writer.writerow(result.row())


@dataclass
class SizeRow:
    """One row of a size table as read back."""

    file: str
    dataset: str
    index: int
    diameter_nm: float       # NaN for a failed fit
    fit_quality: float
    reason: str
    diameter_err_nm: float = float("nan")  # 1σ; NaN for a failed fit or an older table
    misfit: float = float("nan")           # NaN for a failed fit or an older table
    second_particle_z: float = float("nan")  # NaN for a failed fit or an older table
    signal_photons: float = float("nan")
    second_particle_cut: float = float("nan")  # NaN for a failed fit or an older table

    @property
    def ok(self) -> bool:
        return math.isfinite(self.diameter_nm)


def _optional_float(row: dict, column: str) -> float:
    """A number of a size-table row; NaN where empty or absent (an older table)."""
    text = row.get(column) or ""
    return float(text) if text.strip() else float("nan")


def read_sizes(path: str | os.PathLike) -> list[SizeRow]:
    """Rows of a size table written by :func:`write_sizes_csv` (or any CSV with
    ``file,index,diameter_nm`` columns)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"size table {path} does not exist; make one with 'spidarknet size'")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            needed = ("file", "index", "diameter_nm")
            if reader.fieldnames is None or any(c not in reader.fieldnames for c in needed):
                raise InputError(f"{path} is not a size table: it needs columns {','.join(needed)} "
                                 "(written by 'spidarknet size')")
            for number, row in enumerate(reader, start=2):
                try:
                    diameter = float(row["diameter_nm"]) if row["diameter_nm"].strip() else float("nan")
                    rows.append(SizeRow(row["file"], row.get("dataset") or "", int(row["index"]),
                                        diameter, _optional_float(row, "fit_quality"), row.get("reason") or "",
                                        _optional_float(row, "diameter_err_nm"), _optional_float(row, "misfit"),
                                        _optional_float(row, "second_particle_z"),
                                        _optional_float(row, "signal_photons"),
                                        _optional_float(row, "second_particle_cut")))
                except (TypeError, ValueError, AttributeError):
                    raise InputError(f"{path}:{number}: malformed row") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read size table {path}: {exc}") from None
    return rows
