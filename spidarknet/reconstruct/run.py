"""3D reconstruction of a selection with Dragonfly's EMC (``spidarknet reconstruct``).

From a hit list (its selected frames are exported here) or an ``export-emc`` folder,
the frames go onto a reduced detector (:class:`spidarknet.export.emc.PixelReduction`: ``B × B``
binning, then the pixels below ``q_max``), Dragonfly's ``dragonfly.emc`` runs as a
subprocess, and its result becomes a plain 3D intensity with figures and a page.

Public API (other modules and engineers rely on these names)
--------------------------------------------------------------
``reconstruct(source, out, *, binning=None, q_max_inv_nm=None, iterations=30, num_div=None,
threads=None, halves=False, resume=False, force=False, dragonfly=None, progress=True, ...)
-> Reconstruction``
    ``Reconstruction`` is a dataclass with ``out`` (the folder), ``frames``, ``seconds``,
    ``iterations``, ``num_div``, ``num_pix``, ``size`` (voxels per side),
    ``q_per_voxel_inv_nm``, ``halves`` (the two half reconstructions or ``None``) and
    ``line()`` (a one-line summary).
``read_intensity(folder_or_h5) -> (volume, q_per_voxel_inv_nm)``
    ``volume`` is float64 ``n × n × n`` with ``q = 0`` at index ``n // 2`` on every axis;
    ``q_per_voxel_inv_nm`` is ``|q|`` of one voxel step in nm⁻¹ (``q = 4π sin θ / λ``).
``read_log(folder) -> dict of arrays`` (the columns of ``log.csv``), ``find_dragonfly(path=None)``.

The output folder
-----------------
``intensity.h5``: ``/intensity`` (float64 ``n³``, Dragonfly's last model; axis ``i`` is
Dragonfly's ``q_x``, ``j`` ``q_y``, ``k`` ``q_z`` in voxels ``index − n // 2``, in an
orientation of EMC's choosing), attributes ``q_per_voxel_inv_nm``, ``frames``,
``iterations``, ``num_div``; ``/likelihood_per_frame``, ``/mutual_info_per_frame`` and
``/scale`` (per frame, photons-file order, when Dragonfly wrote them).  ``log.csv``
(iteration, seconds, rms_change, mutual_info, log_likelihood, num_rot, beta),
``reconstruct.json`` (settings, reduction, frames, timings), ``frames.csv`` (the frames
used, in photons-file order, with their half), ``slices.png``, ``convergence.png``,
``report.html``.  ``dragonfly/`` keeps Dragonfly's own files: ``config.ini``,
``photons.emc``, ``detector.h5``, ``EMC.log`` and the last iteration's
``data/output_NNN.h5`` (earlier ones are deleted as the run goes: ~7 MB each).  With
``halves`` the sub-folders ``half1/`` (selected frames 0, 2, 4, ... of ``frames.csv``) and
``half2/`` (1, 3, 5, ...) hold the same layout; their Dragonfly runs read the parent's
photons file through a ``blacklist.dat``.

While it runs the folder is ``OUT.partial``; it becomes ``OUT`` only when every run and
figure is complete.  An interrupted run (Ctrl-C, kill) leaves ``OUT.partial`` with its
completed iterations; ``resume=True`` continues it (Dragonfly's ``-r``), as it continues a
complete ``OUT`` to more ``iterations``.

Units: q in nm⁻¹ as the rest of the project prints it; Dragonfly's voxel is
``2π / (λ · ewald_rad)`` with ``ewald_rad`` in (binned) pixels, one pixel at the detector
centre.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidarknet.export.emc import (ExportFolder, EmcReader, PixelReduction, make_reduction, pixel_q_inv_nm,
                            read_export, reduce_photons, reduced_detector)
from spidarknet.core.errors import ConfigError, EngineError, InputError, OutputError
from spidarknet.core.outputs import swap_into_place
from spidarknet.core.pool import core_count

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DRAGONFLY_ENV = "SPIDARKNET_DRAGONFLY"
DRAGONFLY_INSTALL = ("install it with 'make build/dragonfly/.installed' (in the spidarknet repository) or "
                     "'pip install dragonfly-spi' (needs libgsl-dev, libhdf5-dev, libopenmpi-dev), or point "
                     f"--dragonfly or {DRAGONFLY_ENV} at its dragonfly.emc")

#: the defaults, one table (see :func:`choose_reduction` and :func:`default_num_div`)
DEFAULTS = {
    "iterations": 30,          # EMC iterations in all (the log-likelihood levels off well before)
    "max_width_px": 72,        # the reduced detector spans at most this many pixels across
    "pixels_per_fringe": 3.0,  # binning keeps at least this many binned pixels per sphere fringe (2π/d)
    "edge_arc_voxels": 6.0,    # num_div: the step between orientations at the model's edge, in voxels
    "num_div_range": (4, 10),  # ... clamped to this range (num_rot = 10 (5 n³ + n): 3,240 ... 50,100)
    "need_scaling": True,      # fit a scale factor per frame (the fluence varies shot to shot)
    "beta": None,              # Dragonfly's start beta (None: its per-frame 'auto' from the photon count)
    "beta_schedule": (2.0, 10),  # beta x 2.0 every 10 iterations (Dragonfly's own example schedule)
}

PRUNE_KEEP = 2   # Dragonfly outputs kept while running (the last one is what resume needs)


# -- finding Dragonfly ------------------------------------------------------------------------------

class DragonflyError(EngineError):
    """Dragonfly is missing, failed, or wrote something unusable."""


def find_dragonfly(path: str | os.PathLike | None = None) -> Path:
    """``dragonfly.emc``: ``path`` → ``$SPIDARKNET_DRAGONFLY`` → beside ``sys.executable`` →
    ``PATH`` → the repository's ``build/dragonfly/bin``.  A path given (argument or
    environment) that is not there is an error, not a reason to look elsewhere."""
    for given, what in ((path, "--dragonfly"), (os.environ.get(DRAGONFLY_ENV) or None, DRAGONFLY_ENV)):
        if given is None:
            continue
        candidate = Path(given)
        if candidate.is_dir():
            candidate = candidate / "dragonfly.emc"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
        raise DragonflyError(f"Dragonfly's dragonfly.emc not found at {given} (from {what}); {DRAGONFLY_INSTALL}")
    candidates = [Path(sys.executable).parent / "dragonfly.emc"]
    which = shutil.which("dragonfly.emc")
    if which:
        candidates.append(Path(which))
    candidates.append(REPO / "build" / "dragonfly" / "bin" / "dragonfly.emc")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    raise DragonflyError(f"Dragonfly's dragonfly.emc was not found (beside {sys.executable}, on PATH or in "
                         f"{REPO / 'build' / 'dragonfly' / 'bin'}); {DRAGONFLY_INSTALL}")


# -- defaults that suit the data --------------------------------------------------------------------

def inscribed_radius_px(shape: tuple[int, int], centre_xy) -> float:
    """Radius (pixels) of the largest circle about the beam that stays on the frame."""
    rows, cols = shape
    cx, cy = centre_xy
    return float(max(0.0, min(cx + 0.5, cols - 0.5 - cx, cy + 0.5, rows - 0.5 - cy)))


def q_at_radius_inv_nm(radius_px: float, geometry) -> float:
    from spidarknet.sizing import scattering_q_inv_m
    return float(scattering_q_inv_m(radius_px * geometry.pixel_size_m[0], geometry.distance_m,
                                    geometry.wavelength_m)) * 1e-9


def typical_diameter_nm(export: ExportFolder, rows: np.ndarray | None = None) -> float | None:
    """The diameter (nm) of the sphere whose fringes fit the powder (sum) of the frames
    best, by :func:`spidarknet.sizing.fit_sphere` on its rings; ``None`` when that fails."""
    from spidarknet.sizing import fit_sphere, pixel_weight
    if export.usable is None:
        return None
    reader = EmcReader(export.photons)
    powder = reader.powder(rows).reshape(export.frame_shape)
    q = pixel_q_inv_nm(export.frame_shape, export.geometry)
    g = export.geometry
    x = (np.arange(export.frame_shape[1]) - g.centre_px[0])
    y = (np.arange(export.frame_shape[0]) - g.centre_px[1]) * (g.pixel_size_m[1] / g.pixel_size_m[0])
    radius = np.hypot(x[None, :], y[:, None])
    ring = np.rint(radius).astype(np.int64)
    r_max = inscribed_radius_px(export.frame_shape, g.centre_px)
    use = export.usable & (radius <= r_max) & (radius >= 2)
    if use.sum() < 100:
        return None
    photons = np.bincount(ring[use], weights=powder[use])
    n_pix = np.bincount(ring[use]).astype(np.float64)
    q_ring = np.bincount(ring[use], weights=q[use]) / np.maximum(n_pix, 1)
    rad_ring = np.bincount(ring[use], weights=radius[use]) / np.maximum(n_pix, 1)
    good = n_pix > 0
    weight = pixel_weight(rad_ring[good] * g.pixel_size_m[0], g.distance_m)
    weight = weight / weight.max()
    try:
        fit = fit_sphere(q_ring[good] * 1e9, photons[good], n_pix[good], weight=weight)
    except Exception as exc:      # a default only: any failure means 'no estimate'
        log.debug("powder sphere fit failed: %s", exc)
        return None
    return float(fit.diameter_nm) if fit.ok and math.isfinite(fit.diameter_nm) else None


def choose_reduction(export: ExportFolder, binning: int | None, q_max_inv_nm: float | None,
                     rows: np.ndarray | None = None) -> tuple[PixelReduction, dict]:
    """The reduced detector, and how its numbers were chosen.

    Rule: the used region is at most the largest full ring of the detector (the inscribed
    circle about the beam).  When the powder of the frames shows sphere fringes (a fit
    gives a typical diameter ``d``), the binning ``B`` keeps ``pixels_per_fringe`` binned
    pixels per fringe ``2π/d`` and ``q_max`` is where the reduced detector reaches
    ``max_width_px / 2`` binned pixels; without that estimate ``B`` is the smallest that
    fits the inscribed circle into ``max_width_px`` pixels.  Values given win.
    """
    g = export.geometry
    if g.wavelength_m is None:
        raise InputError(f"{export.path}/detector.h5 does not say the wavelength, which q needs; export "
                         "the frames from files that record it (CXI source_1/energy or wavelength)")
    why: dict = {}
    r_in = inscribed_radius_px(export.frame_shape, g.centre_px)
    if r_in < 4:
        raise InputError(f"the beam centre {g.centre_px} lies at the edge of the {export.frame_shape} frames: "
                         "no full ring to reconstruct from; check the geometry")
    q_in = q_at_radius_inv_nm(r_in, g)
    half_width = DEFAULTS["max_width_px"] / 2
    q_px = q_at_radius_inv_nm(1.0, g)                     # ≈ q of one pixel step near the beam
    diameter = None
    if binning is None:
        diameter = typical_diameter_nm(export, rows)
        if diameter is not None:
            fringe_px = 2 * math.pi / diameter / q_px
            binning = max(1, int(fringe_px / DEFAULTS["pixels_per_fringe"]))
            why["binning"] = (f"{DEFAULTS['pixels_per_fringe']:g}+ pixels per fringe of the powder's "
                              f"{diameter:.1f} nm sphere fit ({fringe_px:.1f} pixels per fringe unbinned)")
        else:
            r_cap = r_in if q_max_inv_nm is None else min(r_in, _radius_for_q(q_max_inv_nm, g))
            binning = max(1, math.ceil(2 * r_cap / DEFAULTS["max_width_px"]))
            why["binning"] = (f"no sphere fringes in the powder: the smallest binning that puts the "
                              f"{2 * r_cap:.0f}-pixel ring into {DEFAULTS['max_width_px']} pixels")
    else:
        why["binning"] = "given"
    if q_max_inv_nm is None:
        q_cap = q_at_radius_inv_nm(half_width * binning, g)
        q_max_inv_nm = min(q_in, q_cap)
        why["q_max_inv_nm"] = ("the largest full ring of the detector" if q_in <= q_cap else
                               f"{DEFAULTS['max_width_px']} binned pixels across")
    else:
        why["q_max_inv_nm"] = "given"
    reduction = make_reduction(export.frame_shape, g, export.usable, binning=binning,
                               q_max_inv_nm=q_max_inv_nm)
    why["typical_diameter_nm"] = diameter
    why["inscribed_q_inv_nm"] = q_in
    return reduction, why


def _radius_for_q(q_inv_nm: float, geometry) -> float:
    from spidarknet.sizing import radius_for_q_m
    return radius_for_q_m(q_inv_nm * 1e9, geometry.distance_m, geometry.wavelength_m) / geometry.pixel_size_m[0]


def default_num_div(model_radius_vox: float) -> int:
    """Dragonfly's orientation sampling: neighbouring orientations lie about ``0.944 / n``
    radians apart (Loh & Elser 2009), so at the model's edge (radius ``R`` voxels) they are
    ``0.944 R / n`` voxels apart; ``n`` makes that ``edge_arc_voxels``, within
    ``num_div_range``."""
    lo, hi = DEFAULTS["num_div_range"]
    n = math.ceil(0.944 * model_radius_vox / DEFAULTS["edge_arc_voxels"])
    return int(min(hi, max(lo, n)))


def num_rotations(num_div: int) -> int:
    """Orientations Dragonfly samples for ``num_div`` (its ``quat_gen``): 10 (5 n³ + n)."""
    return 10 * (5 * num_div ** 3 + num_div)


# -- the result ------------------------------------------------------------------------------------

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


# -- reading the results back -----------------------------------------------------------------------

def read_intensity(folder_or_h5: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(volume float64 n³ with q = 0 at n // 2, |q| of one voxel step in nm⁻¹)."""
    import h5py
    path = Path(folder_or_h5)
    if path.is_dir():
        path = path / "intensity.h5"
    if not path.is_file():
        raise InputError(f"no reconstruction at {folder_or_h5}: {path} does not exist (is it a "
                         "'spidarknet reconstruct' output folder?)")
    with h5py.File(path, "r") as f:
        if "intensity" not in f:
            raise InputError(f"{path} holds no /intensity dataset; it is not a reconstruct output")
        return f["intensity"][()].astype(np.float64), float(f["intensity"].attrs["q_per_voxel_inv_nm"])


LOG_COLUMNS = ["iteration", "seconds", "rms_change", "mutual_info", "log_likelihood", "num_rot", "beta"]


def parse_dragonfly_log(path: Path) -> list[list[float]]:
    """The complete iteration rows of Dragonfly's log (Iter, time, rms_change, info_rate,
    log-likelihood, num_rot, beta); a line cut short by a kill is left out."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines(keepends=True):
        parts = line.split()
        if len(parts) != 7 or not line.endswith("\n") or not parts[0].isdigit():
            continue
        try:
            rows.append([float(v) for v in parts])
        except ValueError:
            continue
    return rows


def read_log(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a reconstruction's ``log.csv`` as arrays."""
    path = Path(folder) / "log.csv"
    if not path.is_file():
        raise InputError(f"{path} does not exist: not a 'spidarknet reconstruct' output folder")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([float(r[name]) for r in rows]) for name in LOG_COLUMNS}


# -- running Dragonfly -----------------------------------------------------------------------------

def _write_start_model(folder: Path, detector: Path, photons: Path, seed: int) -> Path:
    """A random start model as Dragonfly draws its own (uniform on [0, 2 m), m the mean photons
    per good pixel and frame), on its grid (``2 ceil(q_max) + 3`` voxels, q_max the largest
    pixel |q| in voxels), from ``numpy.random.default_rng(seed)``: another seed, another start."""
    import h5py
    with h5py.File(detector, "r") as f:
        q = np.sqrt(f["qx"][()] ** 2 + f["qy"][()] ** 2 + f["qz"][()] ** 2)
        good = int(np.count_nonzero(f["mask"][()] == 0))
    n = int(2 * np.ceil(q.max()) + 3)
    frames = EmcReader(photons)
    total = sum(int(frames.sparse(d)[1].sum()) for d in range(len(frames)))
    mean = total / max(len(frames), 1) / max(good, 1)
    start = np.random.default_rng(seed).random((1, n, n, n)) * 2.0 * mean
    path = folder / "start_model.h5"
    with h5py.File(path, "w") as f:
        f["intens"] = start
    return path


def _write_config(folder: Path, photons: Path, detector: Path, settings: dict,
                  blacklist: Path | None = None) -> Path:
    lines = ["# written by spidarknet reconstruct; Dragonfly's [emc] keys (dragonfly/params.pyx)",
             "[emc]",
             f"in_photons_file = {os.path.relpath(photons, folder)}",
             f"in_detector_file = {os.path.relpath(detector, folder)}",
             f"num_div = {settings['num_div']}",
             "output_folder = data",
             "log_file = EMC.log",
             f"need_scaling = {int(settings['need_scaling'])}",
             # the random start model is seeded (seed 0: Dragonfly's own fixed seed; others: a
             # start model of ours, see _write_start_model): the same frames, settings and seed
             # give the same reconstruction, so figures made from it can be repeated
             "fixed_seed = 1",
             f"beta_schedule = {settings['beta_schedule'][0]:g} {int(settings['beta_schedule'][1])}"]
    if settings.get("beta") is not None:
        lines.append(f"beta = {settings['beta']:g}")
    if blacklist is not None:
        lines.append(f"blacklist_file = {os.path.relpath(blacklist, folder)}")
    if settings.get("seed"):
        start = _write_start_model(folder, detector, photons, int(settings["seed"]))
        lines.append(f"start_model_file = {os.path.relpath(start, folder)}")
    path = folder / "config.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def _prune_outputs(data: Path, latest: int, keep: int = PRUNE_KEEP) -> None:
    for old in data.glob("output_*.h5"):
        m = re.fullmatch(r"output_(\d+)\.h5", old.name)
        if m and int(m.group(1)) <= latest - keep:
            old.unlink(missing_ok=True)


def _stop(proc: subprocess.Popen) -> None:
    """End Dragonfly and wait for it (it shares our process group, so a Ctrl-C at the
    terminal has reached it already; if we are killed outright, its next line of output
    meets a closed pipe and ends it)."""
    for sig, wait in ((signal.SIGINT, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_dragonfly(folder: Path, iterations: int, *, threads: int, dragonfly: Path, progress: bool,
                  desc: str = "EMC") -> dict:
    """Run (or continue) Dragonfly in ``folder`` (its config.ini) up to ``iterations`` in all.

    Returns timings.  Raises :class:`DragonflyError` with the exit code, command line and
    the tail of Dragonfly's output when it fails.
    """
    from tqdm import tqdm
    log_path = folder / "EMC.log"
    done = parse_dragonfly_log(log_path)
    if done and not (folder / "data" / f"output_{int(done[-1][0]):03d}.h5").is_file():
        raise OutputError(f"{folder}: the log ends at iteration {int(done[-1][0])} but its output file is "
                          "gone; start over with --force")
    completed = len(done)
    if done:   # leave only complete lines, so that Dragonfly's -r reads the last iteration
        log_path.write_text("".join(line for line in log_path.read_text().splitlines(keepends=True)
                                    if line.endswith("\n")))
    todo = iterations - completed
    if todo <= 0:
        return {"ran": 0, "seconds": 0.0, "completed_before": completed}
    command = [str(dragonfly), str(todo), "-c", "config.ini", "-t", str(threads)]
    if completed:
        command.append("-r")
    else:
        shutil.rmtree(folder / "data", ignore_errors=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    tail: deque[str] = deque(maxlen=40)
    t0 = time.perf_counter()
    log.info("running %s in %s", " ".join(command), folder)
    with tqdm(total=iterations, initial=completed, desc=desc, unit="iter", file=sys.stderr, dynamic_ncols=True,
              disable=not progress or not sys.stderr.isatty()) as bar:
        try:
            proc = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
        except OSError as exc:
            raise DragonflyError(f"cannot start Dragonfly ({' '.join(command)}): {exc}; {DRAGONFLY_INSTALL}") from None
        try:
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                m = re.match(r"Finished iteration (\d+)", line)
                if m:
                    bar.update(1)
                    _prune_outputs(folder / "data", int(m.group(1)))
            proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            proc.stdout.close()
    seconds = time.perf_counter() - t0
    rows = parse_dragonfly_log(log_path)
    if proc.returncode != 0 or len(rows) < iterations:
        what = (f"exited with status {proc.returncode}" if proc.returncode != 0 else
                f"stopped after {len(rows)} of {iterations} iterations")
        raise DragonflyError(f"Dragonfly {what}: {' '.join(command)} (in {folder}); its last output:\n"
                             + "\n".join(tail))
    _prune_outputs(folder / "data", int(rows[-1][0]), keep=1)
    return {"ran": todo, "seconds": seconds, "completed_before": completed}


# -- preparing the input -------------------------------------------------------------------------

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


# -- the products of one run ---------------------------------------------------------------------

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


# -- the whole job ---------------------------------------------------------------------------------

def _check_options(iterations, num_div, threads, beta, beta_schedule, seed) -> None:
    if not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"--iterations must be a whole number >= 1, got {iterations}")
    if num_div is not None and not (isinstance(num_div, int) and num_div >= 1):
        raise ConfigError(f"--num-div must be a whole number >= 1, got {num_div}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if beta is not None and not 0 < beta <= 1:
        raise ConfigError(f"--beta must lie in (0, 1], got {beta}")
    if not (beta_schedule[0] >= 1 and int(beta_schedule[1]) >= 1):
        raise ConfigError(f"--beta-schedule JUMP PERIOD needs JUMP >= 1 and PERIOD >= 1, got {beta_schedule}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0, got {seed!r}")


def _resume_state(work: Path, final: Path, iterations: int, halves: bool) -> tuple[dict, dict]:
    """The state and settings of the run to continue (a finished ``final`` moves back to ``work``)."""
    if work.is_dir():
        pass
    elif final.is_dir() and (final / "reconstruct.json").is_file():
        os.replace(final, work)
    else:
        raise OutputError(f"nothing to resume: neither {work} nor a finished {final} exists; "
                          "start without --resume")
    state_path = work / "state.json"
    if not state_path.is_file():
        raise OutputError(f"{work} lacks state.json (it was interrupted before its input was ready); "
                          "start over with --force")
    state = json.loads(state_path.read_text())
    settings = state["settings"]
    if settings["halves"] != halves and halves:
        raise ConfigError(f"{work} was started without --halves; start over with --force to add them")
    settings["iterations"] = iterations
    return state, settings


def _new_state(source: Path, work: Path, final: Path, settings: dict, force: bool,
               progress: bool) -> tuple[dict, dict]:
    """Check the destination, make ``work`` and prepare the input there (nothing left behind on failure)."""
    if not source.exists():
        raise InputError(f"{source} does not exist: give a hit list (CSV) or an export-emc folder")
    if work.exists() and not force:
        raise OutputError(f"an interrupted reconstruction is in {work}: continue it with --resume, or "
                          "start over with --force")
    if final.exists() and not force:
        raise OutputError(f"output folder {final} already exists; use --force to replace it, --resume "
                          "to continue it, or choose another name")
    parent = final.absolute().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {final}: folder {parent} does not exist or is not writable")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        return _start(source, work, settings, progress)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)      # nothing ran yet: leave nothing behind
        raise


def _run_all(work: Path, runs: list, state: dict, iterations: int, threads: int, exe: Path,
             progress: bool) -> dict:
    """Dragonfly on each run folder in turn, the time and iterations of each kept in state.json."""
    timings = state.setdefault("timings", {})
    for run_dir, _, _ in runs:
        name = run_dir.name if run_dir != work else "all"
        t = run_dragonfly(run_dir / "dragonfly", iterations, threads=threads, dragonfly=exe, progress=progress,
                          desc=f"EMC {name}")
        entry = timings.setdefault(name, {"seconds": 0.0, "iterations_run": 0})
        entry["seconds"] += t["seconds"]
        entry["iterations_run"] += t["ran"]
        (work / "state.json").write_text(json.dumps(state, indent=2, default=float) + "\n")
    return timings


def reconstruct(source: str | os.PathLike, out: str | os.PathLike, *, binning: int | None = None,
                q_max_inv_nm: float | None = None, iterations: int = DEFAULTS["iterations"],
                num_div: int | None = None, threads: int | None = None, halves: bool = False,
                resume: bool = False, force: bool = False, dragonfly: str | os.PathLike | None = None,
                progress: bool = True, need_scaling: bool = DEFAULTS["need_scaling"],
                beta: float | None = DEFAULTS["beta"], beta_schedule: tuple[float, int] = DEFAULTS["beta_schedule"],
                adu_per_photon: float | None = None, seed: int = 0) -> Reconstruction:
    """Reconstruct the selected frames of ``source`` (a hit list or an ``export-emc``
    folder) into the new folder ``out``; see the module notes for what it holds.

    ``binning``, ``q_max_inv_nm`` (nm⁻¹) and ``num_div`` default to :func:`choose_reduction`
    and :func:`default_num_div`; ``threads`` to the cores this process may use.  With
    ``resume`` an interrupted ``OUT.partial`` (or a complete ``out``) is continued to
    ``iterations`` in all, with the settings it was started with.  ``seed`` picks the random
    start model (0: Dragonfly's own fixed seed); runs from several seeds show how much of a
    difference between two selections is the start's.
    """
    t0 = time.perf_counter()
    _check_options(iterations, num_div, threads, beta, beta_schedule, seed)
    source, final = Path(source), Path(out)
    work = final.with_name(final.name + ".partial")
    exe = find_dragonfly(dragonfly)               # before anything is written
    threads = threads or core_count()
    if resume:
        state, settings = _resume_state(work, final, iterations, halves)
    else:
        state, settings = _new_state(source, work, final, {
            "iterations": iterations, "binning": binning, "q_max_inv_nm": q_max_inv_nm, "num_div": num_div,
            "need_scaling": bool(need_scaling), "beta": beta,
            "beta_schedule": [float(beta_schedule[0]), int(beta_schedule[1])], "halves": bool(halves),
            "adu_per_photon": adu_per_photon, "seed": int(seed)}, force, progress)

    n = state["frames"]
    runs = [(work, n, "all selected frames")]
    if settings["halves"]:
        runs += [(work / "half1", (n + 1) // 2, "half 1 (even rows)"), (work / "half2", n // 2, "half 2 (odd rows)")]
    timings = _run_all(work, runs, state, iterations, threads, exe, progress)
    run_settings = {**settings, "threads": threads, "dragonfly": str(exe)}
    summaries = [_finish_run(run_dir, state, run_settings, timings.get(run_dir.name if run_dir != work else "all", {}),
                             frames, title, ["half1", "half2"] if settings["halves"] and run_dir == work else None)
                 for run_dir, frames, title in runs]
    swap_into_place(work, final)
    seconds = time.perf_counter() - t0

    def result(folder: Path, summary: dict, frames: int) -> Reconstruction:
        return Reconstruction(folder, frames, seconds, summary["iterations"], settings["num_div"],
                              int(state["reduction"]["num_pix"]), summary["size_voxels"],
                              summary["q_per_voxel_inv_nm"])

    main = result(final, summaries[0], n)
    if settings["halves"]:
        main.halves = (result(final / "half1", summaries[1], runs[1][1]),
                       result(final / "half2", summaries[2], runs[2][1]))
    return main
