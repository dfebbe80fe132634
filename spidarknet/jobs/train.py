"""``train`` as a library function: darknet detector train on an exported data set, then a model card.

:func:`train_model` starts from the newest backup (resume), given weights (pretrained) or
none, moves an earlier training's weights aside, warns about a data set too small to judge,
shortens a small set's training, trains with a progress bar of iterations and loss, scores the
validation images and writes the model card beside the final weights.
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from spidarknet.core.errors import OutputError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.detection.threshold import validated_model
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.data_folder import ExportedDataset, darknet_label_path
from spidarknet.engine.locate import describe
from spidarknet.engine.model import Model
from spidarknet.engine.train import (MAX_PASSES, SEED_MAX, final_weights, fit_iterations_to_set, newest_backup,
                                     omp_wait_policy, takes_seed, train)
from spidarknet.jobs.engine import engine_for_training

#: fewer labelled singles than this among the validation images give figures too uncertain to trust
FEW_VALIDATION_SINGLES = 10


@dataclass
class TrainSettings:
    """What ``spidarknet train`` is asked to do (its options, by the same names)."""

    dataset: str                       # the folder export-dataset made
    cfg: str | None = None             # default: the one export-dataset wrote
    darknet: str | None = None         # default: the repository's build, else the user's cache (built on need)
    gpus: str | None = None            # "0" or "0,1"
    resume: bool = False               # from the newest backup
    pretrained: str | None = None      # start from these weights; the iteration count restarts
    force: bool = False                # train again over existing final weights
    seed: int | str = 0                # or "random": drawn, and recorded in the card
    omp_wait: str = "auto"             # active, passive, auto
    backend: str = "opencv"            # scores the validation images


@dataclass
class TrainResult:
    """What a training made: the final weights and their model (card written), or where it stopped."""

    weights: Path | None = None
    model: Model | None = None
    card: Path | None = None
    iterations: int = 0
    seconds: float = 0.0
    final_avg_loss: float | None = None
    interrupted: bool = False
    backup: Path | None = None         # interrupted: the newest backup weights


def train_model(settings: TrainSettings, feedback: Feedback = SILENT) -> TrainResult:
    """Run ``spidarknet train`` (see the module); an interrupted training returns with
    ``interrupted`` set, having said where the newest backup is."""
    ds = ExportedDataset.open(settings.dataset, settings.cfg)
    darknet = engine_for_training(settings.darknet, feedback)
    weights = _starting_weights(settings, ds, feedback)
    _warn_small(ds, feedback)
    if not settings.resume:
        _fit_iterations(ds, feedback)
    seed = settings.seed
    if seed == "random":  # an engine without our seed patch seeds from the clock, unrecorded
        seed = secrets.randbelow(SEED_MAX + 1) if takes_seed(darknet) else None
    started = time.perf_counter()
    result = _train_with_progress(settings, ds, darknet, weights, seed, feedback)
    if isinstance(result, TrainResult):
        return result
    seconds = time.perf_counter() - started
    last = result.history[-1] if result.history else None
    model = validated_model(ds, result.weights, backend=settings.backend)
    card = model.save_card({"dataset": str(ds.root.resolve()), "iterations": result.iterations, "seed": seed,
                            "final_avg_loss": last.avg_loss if last else None,
                            "train_seconds": round(seconds, 1)})
    return TrainResult(result.weights, model, card, result.iterations, seconds, last.avg_loss if last else None)


def _starting_weights(settings: TrainSettings, ds: ExportedDataset, feedback: Feedback) -> Path | None:
    """The weights training starts from: the newest backup (resume), pretrained, or none;
    refuses to train over a finished training without force."""
    final = final_weights(ds)
    weights = None
    if settings.resume:
        weights = newest_backup(ds)
        if weights is None:
            raise OutputError(f"nothing to resume: no backup weights in {ds.backup_dir}")
    elif final.exists() and not settings.force:
        raise OutputError(f"{final} exists from an earlier training; use --resume to continue it, "
                          "--force to train again, or export a new data set")
    else:
        _set_aside_backups(ds, feedback)
    if settings.pretrained:
        weights = Path(settings.pretrained)
    return weights


def _set_aside_backups(ds: ExportedDataset, feedback: Feedback) -> None:
    """Move an earlier training's weights into ``backup/previous/`` before training anew, so
    that a --resume after an interruption continues this training, never the old one."""
    base = ds.weights_base
    old = [p for p in ds.backup_dir.glob(f"{base}*") if p.suffix in (".weights", ".backup")
           and (p.name == f"{base}.backup" or p.name.startswith(f"{base}_"))]
    if not old:
        return
    previous = ds.backup_dir / "previous"
    if previous.is_dir():
        shutil.rmtree(previous)
    previous.mkdir()
    for path in old:
        path.rename(previous / path.name)
    feedback.say(f"the earlier training's {len(old)} weight files are now in {previous}")


def _warn_small(ds: ExportedDataset, feedback: Feedback) -> None:
    """A warning where the validation images hold too few singles for a threshold or an F1."""
    singles = 0
    for image in ds.valid_images:
        label = ds.root / darknet_label_path(image)
        singles += label.is_file() and label.stat().st_size > 0
    if singles < FEW_VALIDATION_SINGLES:
        feedback.warn(f"the validation images hold {singles} labelled singles (of {len(ds.valid_images)}): "
                      "the threshold and F1 chosen on them will be uncertain; label or export more frames "
                      f"(at least {FEW_VALIDATION_SINGLES} singles among the validation frames)")


def _fit_iterations(ds: ExportedDataset, feedback: Feedback) -> None:
    """A small data set trains fewer iterations than the default (and says so)."""
    changed = fit_iterations_to_set(ds)
    if changed:
        before, after = changed
        feedback.say(f"a small data set ({len(ds.train_images)} training images): training {after} iterations "
                     f"instead of {before}, at most {MAX_PASSES} passes over the images (export-dataset "
                     "--max-batches N sets the count)")


def _train_with_progress(settings: TrainSettings, ds: ExportedDataset, darknet, weights: Path | None,
                         seed: int | None, feedback: Feedback):
    """darknet's training with a progress bar of iterations and loss; an interrupted
    :class:`TrainResult` when interrupted (after saying where the newest backup is)."""
    max_batches = DarknetCfg.load(ds.cfg_path).net.get_int("max_batches", 0) or None
    log_path = ds.root / "train.log"
    omp_wait = omp_wait_policy(settings.omp_wait)
    feedback.say(f"training {ds.cfg_path.name} on {len(ds.train_images)} images with {describe(darknet)} "
                 f"(OpenMP wait policy {omp_wait}, seed {'from the clock' if seed is None else seed}); "
                 f"log: {log_path}")
    bar = feedback.bar(total=max_batches, desc="train", unit="it")

    def on_progress(p) -> None:
        bar.n = p.iteration
        bar.set_postfix(loss=f"{p.loss:.3f}", avg=f"{p.avg_loss:.3f}", refresh=False)
        bar.refresh()

    try:
        return train(ds, darknet, weights=weights, clear=bool(settings.pretrained), gpus=settings.gpus,
                     log_path=log_path, on_progress=on_progress, omp_wait=omp_wait, seed=seed)
    except KeyboardInterrupt:
        bar.close()
        backup = newest_backup(ds)
        where = f"newest backup: {backup}" if backup else "no backup was written yet (one every 100 iterations)"
        feedback.say(f"interrupted: darknet stopped; {where}; continue with 'spidarknet train {settings.dataset} "
                     "--resume'")
        return TrainResult(interrupted=True, backup=backup)
    finally:
        bar.close()
