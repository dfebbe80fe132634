"""The whole job of ``spidarknet reconstruct``: :func:`reconstruct` checks its options, prepares
(or resumes) the work folder, runs Dragonfly on all frames and on the halves, writes the
products and moves the folder into place (see :mod:`spidarknet.reconstruct` for the folder)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from spidarknet.core.errors import ConfigError, InputError, OutputError
from spidarknet.core.outputs import swap_into_place
from spidarknet.core.pool import core_count
from spidarknet.reconstruct.defaults import DEFAULTS
from spidarknet.reconstruct.dragonfly import find_dragonfly, run_dragonfly
from spidarknet.reconstruct.prepare import _start
from spidarknet.reconstruct.results import Reconstruction, _finish_run


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
    folder) into the new folder ``out``; see :mod:`spidarknet.reconstruct` for what it holds.

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
