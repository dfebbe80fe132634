"""A run's input: the selected frames exported (from a hit list) or read (from an
``export-emc`` folder), reduced, and written with Dragonfly's configs where it reads them."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.export.emc import EmcReader, ExportFolder, read_export, reduce_photons, reduced_detector
from spidarknet.reconstruct.defaults import DEFAULTS
from spidarknet.reconstruct.dragonfly import _write_config
from spidarknet.reconstruct.reduction import choose_reduction, default_num_div


def _frame_table(export: ExportFolder) -> list[dict]:
    """The frames of the export's photons file that are selected, in photons-file order."""
    table = export.path / "frames.csv"
    if table.is_file():
        with open(table, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["emc_row"]) >= 0 and
                    (not export.meta.get("all_frames") or r.get("selected", "1") == "1")]
        rows.sort(key=lambda r: int(r["emc_row"]))
        return rows
    if export.meta.get("all_frames"):
        raise InputError(f"{export.path} holds every frame (--all-frames) but no frames.csv says which "
                         "are selected; export it again")
    return [{"emc_row": str(d), "file": "", "dataset": "", "index": "", "score": ""}
            for d in range(export.num_data)]


def _prepare(source: Path, work: Path, settings: dict, progress: bool) -> dict:
    """Export (a hit list) or read (an export folder), reduce, write work/dragonfly/ input."""
    disable = not progress or not sys.stderr.isatty()
    export, staging = _open_export(source, work, settings, disable)
    frames = _frame_table(export)
    if len(frames) < 2:
        raise InputError(f"{len(frames)} selected frame(s): EMC needs many (hundreds); select more")
    rows = np.array([int(r["emc_row"]) for r in frames], dtype=np.int64)
    dragonfly_dir = work / "dragonfly"
    dragonfly_dir.mkdir(parents=True, exist_ok=True)
    if export.cropped:
        reduction_info, ewald_rad, detd, photons_total = _copy_reduced(export, rows, dragonfly_dir, settings)
    else:
        reduction_info, ewald_rad, detd, photons_total = _reduce(export, rows, dragonfly_dir, settings, disable)
    wavelength_m = export.geometry.wavelength_m
    q_per_voxel = 2 * math.pi / (wavelength_m * 1e9) / ewald_rad
    _write_frames_csv(work / "frames.csv", frames)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    return {"source": str(source), "source_kind": "export-emc folder" if source.is_dir() else "hit list",
            "frames": len(frames), "reduction": reduction_info, "ewald_rad_vox": ewald_rad, "detd_px": detd,
            "wavelength_m": wavelength_m, "q_per_voxel_inv_nm": q_per_voxel,
            "mean_photons_per_frame": photons_total / len(frames)}


def _open_export(source: Path, work: Path, settings: dict, disable: bool) -> tuple[ExportFolder, Path | None]:
    """The export folder ``source`` is, or the one its hit list's selection is exported into
    (``work/export-full``, returned second so it can be removed afterwards; None for a folder)."""
    if source.is_dir():
        return read_export(source), None
    from tqdm import tqdm

    from spidarknet.export.emc import export_emc
    from spidarknet.hits import read_selected
    hits, flags = read_selected(source, unique=True)
    staging = work / "export-full"
    with tqdm(total=int(flags.sum()), desc="export", unit="frame", file=sys.stderr,
              disable=disable) as bar:
        export_emc(hits, flags, staging, adu_per_photon=settings.get("adu_per_photon"),
                   hit_list_name=str(source), on_frames=bar.update)
    return read_export(staging), staging


def _copy_reduced(export: ExportFolder, rows: np.ndarray, dragonfly_dir: Path, settings: dict):
    """An export already reduced (cropped in q, binned): its detector and the selected frames'
    photons copied as they are; returns (reduction, Ewald radius, detector distance, photons)."""
    from spidarknet.export.emc import EmcWriter
    if settings["binning"] not in (None, export.binning) or settings["q_max_inv_nm"] is not None:
        raise InputError(f"{export.path} is already reduced to {export.num_pix} pixels (q < "
                         f"{export.q_max_inv_nm:g} nm⁻¹, binning {export.binning}): reconstruct it "
                         "without --binning/--q-max, or export the frames again without them")
    if export.geometry.wavelength_m is None:
        raise InputError(f"{export.path}/detector.h5 does not say the wavelength, which q needs")
    reduction_info = {"binning": export.binning, "q_max_inv_nm": export.q_max_inv_nm,
                      "num_pix": export.num_pix, "why": {"binning": "as exported", "q_max_inv_nm": "as exported"}}
    shutil.copyfile(export.detector, dragonfly_dir / "detector.h5")
    reader = EmcReader(export.photons)
    writer = EmcWriter(dragonfly_dir / "photons.emc", export.num_pix)
    try:
        for d in rows:
            writer.write_frame(reader.dense(int(d)))
        writer.close()
    except BaseException:
        writer.discard_parts()
        raise
    detd = export.geometry.distance_m / export.geometry.pixel_size_m[0]
    return reduction_info, export.ewald_rad, detd, writer.photons


def _reduce(export: ExportFolder, rows: np.ndarray, dragonfly_dir: Path, settings: dict, disable: bool):
    """The export binned and cropped in q as the settings ask (or as chosen for them): the
    reduced detector and photons written; returns (reduction, Ewald radius, detector distance, photons)."""
    from tqdm import tqdm
    reduction, why = choose_reduction(export, settings["binning"], settings["q_max_inv_nm"], rows)
    ewald = None if abs(export.ewald_rad - export.geometry.distance_m / export.geometry.pixel_size_m[0]) \
        < 1e-6 * export.ewald_rad else export.ewald_rad / reduction.binning
    detector = reduced_detector(reduction, ewald_rad=ewald, polarization=export.polarization)
    detector.attrs["written_by"] = "spidarknet reconstruct"
    detector.write(dragonfly_dir / "detector.h5")
    reader = EmcReader(export.photons)
    with tqdm(total=len(rows), desc="reduce", unit="frame", file=sys.stderr, disable=disable) as bar:
        writer = reduce_photons(reader, reduction, dragonfly_dir / "photons.emc", rows, on_frames=bar.update)
    return {**reduction.describe(), "why": why}, detector.ewald_rad, detector.detd, writer.photons


def _write_frames_csv(path: Path, frames: list[dict]) -> None:
    """Which input frame each row of photons.emc is, and its half (1, 2) for the half-data maps."""
    with open(path, "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["emc_row", "file", "dataset", "index", "score", "half"])
        for k, r in enumerate(frames):
            table.writerow([k, r.get("file", ""), r.get("dataset", ""), r.get("index", ""), r.get("score", ""),
                            1 + k % 2])


def _model_radius_vox(detector_path: Path) -> float:
    import h5py
    with h5py.File(detector_path, "r") as f:
        q = np.stack([f["qx"][()], f["qy"][()], f["qz"][()]])
    return float(np.sqrt((q * q).sum(axis=0)).max())


def _start(source: Path, work: Path, settings: dict, progress: bool) -> tuple[dict, dict]:
    """Prepare the input, choose the defaults, write the Dragonfly configs and state.json."""
    settings = dict(settings)
    num_div, halves = settings["num_div"], settings["halves"]
    t_prep = time.perf_counter()
    state = _prepare(source, work, settings, progress)
    state["prepare_seconds"] = time.perf_counter() - t_prep
    radius = _model_radius_vox(work / "dragonfly" / "detector.h5")
    state["model_radius_vox"] = radius
    if num_div is None:
        settings["num_div"] = default_num_div(radius)
        state["num_div_rule"] = (f"0.944 R / n ≈ {DEFAULTS['edge_arc_voxels']:g} voxels at the model "
                                 f"edge R = {radius:.1f}, within {DEFAULTS['num_div_range']}")
    else:
        state["num_div_rule"] = "given"
    settings["binning"] = state["reduction"]["binning"]
    settings["q_max_inv_nm"] = state["reduction"]["q_max_inv_nm"]
    state["settings"] = settings
    _write_config(work / "dragonfly", work / "dragonfly" / "photons.emc", work / "dragonfly" / "detector.h5",
                  settings)
    n = state["frames"]
    if halves:
        for k in (1, 2):
            half = work / f"half{k}" / "dragonfly"
            half.mkdir(parents=True)
            with open(half / "blacklist.dat", "w") as handle:
                handle.writelines("0\n" if d % 2 == k - 1 else "1\n" for d in range(n))
            _write_config(half, work / "dragonfly" / "photons.emc", work / "dragonfly" / "detector.h5",
                          settings, blacklist=half / "blacklist.dat")
    (work / "state.json").write_text(json.dumps(state, indent=2, default=float) + "\n")
    return state, settings
