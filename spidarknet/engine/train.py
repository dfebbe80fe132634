"""``darknet detector train`` on an exported data set, watched line by line."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from spidarknet.core.errors import EngineError
from spidarknet.core.pool import core_count
from spidarknet.engine.cfg import DarknetCfg, set_iterations
from spidarknet.engine.data_folder import ExportedDataset
from spidarknet.engine.locate import Found
from spidarknet.engine.runner import run_darknet
from spidarknet.engine.weights import check_weights

#: the environment variable our darknet build (patch 0004) seeds its random numbers from
SEED_ENV = "SPIDARKNET_SEED"
#: the largest seed: darknet calls srand(seed + 1), as glibc takes srand(0) for srand(1)
SEED_MAX = 2**32 - 2

#: "12: 3.456789, 4.567890 avg, 0.001000 rate, 0.512345 seconds, 192 images"
PROGRESS = re.compile(r"^\s*(\d+):\s*(\S+),\s*(\S+)\s+avg,\s*(\S+)\s+rate,\s*(\S+)\s+seconds,\s*(\d+)\s+images")


@dataclass
class Progress:
    iteration: int
    loss: float
    avg_loss: float
    rate: float
    seconds: float
    images: int


@dataclass
class TrainResult:
    weights: Path
    iterations: int
    history: list[Progress] = field(default_factory=list)
    log_path: Path | None = None


#: a training of the default length passes over a small set's images at most this many times ...
MAX_PASSES = 10
#: ... and trains at least this many iterations (four times the template's warm-up)
MIN_ITERATIONS = 200


def fit_iterations_to_set(ds: ExportedDataset) -> tuple[int, int] | None:
    """Shorten a small data set's training: where export-dataset chose the iterations (no
    ``--max-batches``) and they would pass over the training images more than
    :data:`MAX_PASSES` times, the cfg's ``max_batches`` (and its steps) is cut to
    ``MAX_PASSES`` passes, never below :data:`MIN_ITERATIONS`.  Returns (before, after) when
    it changed the cfg, else None.  A default-recipe set (2,560 training frames, 4
    orientations: 2.3 passes in 1,500 iterations) is left alone."""
    summary = ds.root / "export.json"
    if not summary.is_file() or json.loads(summary.read_text()).get("max_batches_given", True):
        return None
    cfg = DarknetCfg.load(ds.cfg_path)
    before = cfg.net.get_int("max_batches", 0)
    batch = cfg.net.get_int("batch", 1)
    after = min(before, max(MIN_ITERATIONS, math.ceil(MAX_PASSES * len(ds.train_images) / batch)))
    if after >= before:
        return None
    set_iterations(cfg.net, after)
    cfg.save(ds.cfg_path)
    return before, after


def parse_progress(line: str) -> Progress | None:
    match = PROGRESS.match(line)
    if not match:
        return None
    it, loss, avg, rate, sec, images = match.groups()
    return Progress(int(it), float(loss), float(avg), float(rate), float(sec), int(images))


def newest_backup(ds: ExportedDataset) -> Path | None:
    """The latest weights darknet saved for this data set's cfg (by modification time)."""
    base = ds.weights_base
    candidates = [p for p in ds.backup_dir.glob(f"{base}*") if p.suffix in (".weights", ".backup")]
    candidates = [p for p in candidates if p.name == f"{base}.backup" or p.name.startswith(f"{base}_")]
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name)) if candidates else None


def final_weights(ds: ExportedDataset) -> Path:
    return ds.backup_dir / f"{ds.weights_base}_final.weights"


def takes_seed(darknet: Found) -> bool:
    """True when this darknet seeds its random numbers from ``$SPIDARKNET_SEED``.

    Upstream seeds from the clock and draws the augmentation of every training image
    from one generator shared by 64 loading threads, so no two trainings agree;
    ``patches/0004-reproducible-random-numbers.patch`` fixes both.  Builds from before
    that patch (and Debian's binary) do not contain the variable's name.
    """
    try:
        return SEED_ENV.encode() in Path(darknet.path).read_bytes()
    except OSError:
        return False


def omp_wait_policy(choice: str = "auto") -> str:
    """OpenMP's wait policy for darknet's threads: ``active`` or ``passive``.

    Measured here (2 cores, quarter-width tiny net): with the cores to itself, spinning
    (``active``) trains 1.5x faster than sleeping (``passive``); with one other busy
    process on the machine, spinning threads starve the working ones and training ran
    4x slower than ``passive``.  ``auto`` keeps the user's ``OMP_WAIT_POLICY`` if set,
    else picks ``passive`` when the machine is already busy (1-minute load at least half
    the cores) and ``active`` otherwise.
    """
    if choice in ("active", "passive"):
        return choice
    if os.environ.get("OMP_WAIT_POLICY"):
        return os.environ["OMP_WAIT_POLICY"].lower()
    cores = core_count()
    return "passive" if os.getloadavg()[0] >= cores / 2 else "active"


def train(ds: ExportedDataset, darknet: Found, *, weights: Path | None = None, clear: bool = False,
          gpus: str | None = None, log_path: Path | None = None,
          on_progress: Callable[[Progress], None] | None = None,
          on_line: Callable[[str], None] | None = None, omp_wait: str | None = None,
          seed: int | None = None) -> TrainResult:
    """Run darknet's trainer in the data set folder; return where the final weights are.

    ``weights`` starts from existing weights (a backup to resume, or pretrained
    ones; ``clear`` resets their iteration count).  ``omp_wait`` sets OpenMP's
    ``OMP_WAIT_POLICY`` for the OpenMP build (see :func:`omp_wait_policy`).  ``seed``
    (0 to 2**32 - 2) seeds darknet's initial weights and data augmentation: the same
    seed, data set, build and CPU give byte-identical weights, whatever the number of
    OpenMP threads; ``None`` leaves darknet to seed from the clock.  Raises
    :class:`EngineError` when darknet fails, even if it exits with status 0, when the
    loss turns NaN, and before starting when ``seed`` is given to a darknet that
    cannot take it.
    """
    if seed is not None:
        _check_seed(seed, darknet)
    cfg = DarknetCfg.load(ds.cfg_path)
    if weights is not None:
        check_weights(cfg, weights, partial=True)
    ds.backup_dir.mkdir(exist_ok=True)
    args = _train_command(darknet, ds, weights, gpus, clear)
    history: list[Progress] = []
    nan_line: list[str] = []

    def handle(line: str) -> None:
        progress = parse_progress(line)
        if progress is not None:
            history.append(progress)
            if math.isnan(progress.loss) or math.isnan(progress.avg_loss):
                nan_line.append(line)
            if on_progress is not None:
                on_progress(progress)
        if on_line is not None:
            on_line(line)

    env = _train_environment(omp_wait, seed)
    run_darknet(args, cwd=ds.root, log_path=log_path, on_line=handle, what="darknet detector train", env=env)
    if nan_line:
        raise EngineError(f"training diverged (loss is NaN at '{nan_line[0]}'); lower the learning rate "
                          "with export-dataset --learning-rate, or check the data set")
    final = final_weights(ds)
    if not final.is_file():
        raise EngineError(f"darknet finished but wrote no {final}; see {log_path or 'its output'}")
    check_weights(cfg, final)
    return TrainResult(weights=final, iterations=history[-1].iteration if history else 0,
                       history=history, log_path=log_path)


def _check_seed(seed: int, darknet: Found) -> None:
    """Refuse a seed out of darknet's range, or one given to a darknet that cannot take it."""
    if not 0 <= seed <= SEED_MAX:
        raise EngineError(f"seed {seed} is out of range: darknet takes 0 to {SEED_MAX}")
    if not takes_seed(darknet):
        raise EngineError(f"{darknet.path} cannot be seeded (it predates our seed patch); rebuild it "
                          "with 'make darknet', or train with --seed random to let it seed from the clock")


def _train_command(darknet: Found, ds: ExportedDataset, weights: Path | None, gpus: str | None,
                   clear: bool) -> list[str]:
    """``darknet detector train obj.data NET.cfg [WEIGHTS] [-gpus G] [-clear]``, run in the data set folder."""
    args = [str(darknet.path), "detector", "train", "obj.data", ds.cfg_path.name]
    if weights is not None:
        args.append(str(Path(weights).resolve()))
    if gpus:
        args += ["-gpus", gpus]
    if clear:
        args.append("-clear")
    return args


def _train_environment(omp_wait: str | None, seed: int | None) -> dict:
    """This process's environment with OpenMP's wait policy and darknet's seed (only an explicit one)."""
    env = dict(os.environ)
    env.pop(SEED_ENV, None)  # only an explicit seed applies
    if omp_wait:
        env["OMP_WAIT_POLICY"] = omp_wait
    if seed is not None:
        env[SEED_ENV] = str(seed)
    return env
