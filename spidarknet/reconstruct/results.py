"""What a run leaves: :class:`Reconstruction`, and each run folder's ``intensity.h5``,
``log.csv``, figures, ``reconstruct.json`` and page (:func:`_finish_run`); reading them back."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.reconstruct.dragonfly import LOG_COLUMNS, DragonflyError, num_rotations, parse_dragonfly_log


@dataclass
class Reconstruction:
    """What :func:`reconstruct` wrote."""

    out: Path
    frames: int
    seconds: float
    iterations: int = 0
    num_div: int = 0
    num_pix: int = 0
    size: int = 0
    q_per_voxel_inv_nm: float = float("nan")
    halves: tuple["Reconstruction", "Reconstruction"] | None = None

    def line(self) -> str:
        text = (f"{self.frames} frames, {self.iterations} EMC iterations ({self.num_div and num_rotations(self.num_div)} "
                f"orientations, {self.num_pix} pixels) -> {self.out}/intensity.h5, {self.size}³ voxels of "
                f"{self.q_per_voxel_inv_nm:.4f} nm⁻¹, {self.seconds:.0f} s")
        if self.halves:
            text += f"; halves of {self.halves[0].frames} and {self.halves[1].frames} frames in half1/, half2/"
        return text


def read_intensity(folder_or_h5: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(volume float64 n³ with q = 0 at n // 2, |q| of one voxel step in nm⁻¹) of a run folder or
    its ``intensity.h5``."""
    from spidarknet.frames.source import open_h5, reading
    path = Path(folder_or_h5)
    if path.is_dir():
        path = path / "intensity.h5"
    if not path.is_file():
        raise InputError(f"no reconstruction at {folder_or_h5}: {path} does not exist (is it a "
                         "'spidarknet reconstruct' output folder?)")
    with open_h5(str(path)) as f:
        if "intensity" not in f:
            raise InputError(f"{path} holds no /intensity dataset; it is not a reconstruct output")
        with reading(path, "/intensity", "is it a 'spidarknet reconstruct' output?"):
            volume = f["intensity"][()].astype(np.float64)
            dq = f["intensity"].attrs.get("q_per_voxel_inv_nm", f.attrs.get("q_per_voxel_inv_nm"))
    if dq is None:
        raise InputError(f"{path}: /intensity has no q_per_voxel_inv_nm attribute; rewrite it with "
                         "'spidarknet reconstruct'")
    return volume, float(dq)


def read_log(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a reconstruction's ``log.csv`` as arrays."""
    path = Path(folder) / "log.csv"
    if not path.is_file():
        raise InputError(f"{path} does not exist: not a 'spidarknet reconstruct' output folder")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([float(r[name]) for r in rows]) for name in LOG_COLUMNS}


def _finish_run(run_dir: Path, state: dict, settings: dict, timing: dict, frames: int, title: str,
                halves: list[str] | None = None) -> dict:
    """intensity.h5, log.csv, figures, reconstruct.json and report.html of one Dragonfly run."""
    import h5py
    dragonfly_dir = run_dir / "dragonfly"
    rows = parse_dragonfly_log(dragonfly_dir / "EMC.log")
    if not rows:
        raise DragonflyError(f"Dragonfly wrote no iteration into {dragonfly_dir / 'EMC.log'}")
    last = int(rows[-1][0])
    output = dragonfly_dir / "data" / f"output_{last:03d}.h5"
    if not output.is_file():
        raise DragonflyError(f"Dragonfly's output {output} of its last iteration is missing")
    q_vox = state["q_per_voxel_inv_nm"]
    with h5py.File(output, "r") as src, h5py.File(run_dir / "intensity.h5", "w") as out:
        intens = src["intens"][()]
        if intens.ndim == 4:
            intens = intens[0]
        dset = out.create_dataset("intensity", data=intens.astype(np.float64), compression="gzip")
        dset.attrs.update({"q_per_voxel_inv_nm": q_vox, "frames": frames, "iterations": last,
                           "num_div": settings["num_div"], "centre_index": intens.shape[0] // 2,
                           "axes": "Dragonfly's (qx, qy, qz) in voxels, index - n // 2, q = 4π sin θ / λ"})
        per_frame = np.zeros(0)
        for name, target in (("likelihood", "likelihood_per_frame"), ("mutual_info", "mutual_info_per_frame"),
                             ("scale", "scale")):
            if name in src:
                per_frame = src[name][()]
                out.create_dataset(target, data=per_frame)
        out.attrs.update({"written_by": "spidarknet reconstruct", "source": state["source"]})
    with open(run_dir / "log.csv", "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(LOG_COLUMNS)
        for r in rows:
            table.writerow([int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6]])
    from spidarknet.reconstruct.page import convergence_figure, slices_figure, write_page
    slices_figure(intens, q_vox, run_dir / "slices.png", title)
    convergence_figure(rows, run_dir / "convergence.png", title)
    summary = {"title": title, "frames": frames, "iterations": last, "num_div": settings["num_div"],
               "num_rot": num_rotations(settings["num_div"]), "size_voxels": int(intens.shape[0]),
               "q_per_voxel_inv_nm": q_vox, "q_max_inv_nm": q_vox * (intens.shape[0] // 2),
               "settings": settings, "input": state, "timing": timing,
               "seconds_per_iteration": float(np.mean([r[1] for r in rows])),
               "final": dict(zip(LOG_COLUMNS, rows[-1])), "halves": halves}
    from spidarknet.core.outputs import json_ready
    with open(run_dir / "reconstruct.json", "w") as handle:
        json.dump(json_ready(summary), handle, indent=2, allow_nan=False)
        handle.write("\n")
    write_page(run_dir / "report.html", summary)
    return summary
