"""Dragonfly's EMC as a subprocess: finding ``dragonfly.emc``, its config, its log, and a run
of it (continued where an earlier one stopped)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from spidarknet.core.errors import EngineError, OutputError
from spidarknet.export.emc import EmcReader

log = logging.getLogger(__name__)


REPO = Path(__file__).resolve().parents[2]
DRAGONFLY_ENV = "SPIDARKNET_DRAGONFLY"
DRAGONFLY_INSTALL = ("install it with 'make build/dragonfly/.installed' (in the spidarknet repository) or "
                     "'pip install dragonfly-spi' (needs libgsl-dev, libhdf5-dev, libopenmpi-dev), or point "
                     f"--dragonfly or {DRAGONFLY_ENV} at its dragonfly.emc")
PRUNE_KEEP = 2   # Dragonfly outputs kept while running (the last one is what resume needs)
LOG_COLUMNS = ["iteration", "seconds", "rms_change", "mutual_info", "log_likelihood", "num_rot", "beta"]


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


def num_rotations(num_div: int) -> int:
    """Orientations Dragonfly samples for ``num_div`` (its ``quat_gen``): 10 (5 n³ + n)."""
    return 10 * (5 * num_div ** 3 + num_div)


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


def _completed_iterations(folder: Path) -> int:
    """The iterations an earlier run in ``folder`` completed; its log is trimmed to complete
    lines, so that Dragonfly's ``-r`` reads the last one.  An error when that one's output is gone."""
    log_path = folder / "EMC.log"
    done = parse_dragonfly_log(log_path)
    if done and not (folder / "data" / f"output_{int(done[-1][0]):03d}.h5").is_file():
        raise OutputError(f"{folder}: the log ends at iteration {int(done[-1][0])} but its output file is "
                          "gone; start over with --force")
    if done:
        log_path.write_text("".join(line for line in log_path.read_text().splitlines(keepends=True)
                                    if line.endswith("\n")))
    return len(done)


def _follow(proc: subprocess.Popen, folder: Path, bar, tail: deque) -> None:
    """Dragonfly's output, line by line until it ends: the last lines kept in ``tail``, and at
    each finished iteration the bar moved on and older outputs deleted; Dragonfly is stopped
    when this process is interrupted."""
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


def run_dragonfly(folder: Path, iterations: int, *, threads: int, dragonfly: Path, progress: bool,
                  desc: str = "EMC") -> dict:
    """Run (or continue) Dragonfly in ``folder`` (its config.ini) up to ``iterations`` in all.

    Returns timings.  Raises :class:`DragonflyError` with the exit code, command line and
    the tail of Dragonfly's output when it fails.
    """
    from tqdm import tqdm
    completed = _completed_iterations(folder)
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
        _follow(proc, folder, bar, tail)
    seconds = time.perf_counter() - t0
    rows = parse_dragonfly_log(folder / "EMC.log")
    if proc.returncode != 0 or len(rows) < iterations:
        what = (f"exited with status {proc.returncode}" if proc.returncode != 0 else
                f"stopped after {len(rows)} of {iterations} iterations")
        raise DragonflyError(f"Dragonfly {what}: {' '.join(command)} (in {folder}); its last output:\n"
                             + "\n".join(tail))
    _prune_outputs(folder / "data", int(rows[-1][0]), keep=1)
    return {"ran": todo, "seconds": seconds, "completed_before": completed}
