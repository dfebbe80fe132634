"""``learn`` as a library function: a selection learnt from a few labelled frames of the user's run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from spidarknet.core.errors import ConfigError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.outputs import check_destination
from spidarknet.dataset import labels_from_dataset, labels_from_selections
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.frames.options import FrameOptions, open_source
from spidarknet.selection.pipeline import learn_from_labels
from spidarknet.selection.selector import Selector


@dataclass
class LearnSettings:
    """What ``spidarknet learn`` is asked to do (its options, by the same names)."""

    frames: FrameOptions
    out: str
    positives: Sequence[str] = ()       # selections of frames labelled single ...
    negatives: Sequence[str] = ()       # ... and not single (default: every other frame)
    labels_dataset: str | None = None   # or a per-frame 0/1 dataset in the files
    weights: str | None = None          # default: the built-in model
    screen: float | None = None
    folds: int = 5
    seed: int = 0
    backend: str = "opencv"
    jobs: int | None = None
    force: bool = False


def learn_to_file(settings: LearnSettings, feedback: Feedback = SILENT) -> Selector:
    """Run ``spidarknet learn``: score and measure the labelled frames, learn the selector
    (cross-validated figures in ``selector.figures``), save it; the selector."""
    if settings.folds < 2:
        raise ConfigError(f"--folds {settings.folds}: give at least 2")
    if settings.screen is not None and not 0 <= settings.screen <= 1:
        raise ConfigError(f"--screen {settings.screen:g} must lie between 0 and 1")
    check_destination(settings.out, settings.force, "selection")
    source = open_source(settings.frames)
    labels = _labels(settings, source)
    model = load_model(settings.weights or str(builtin_weights()))
    bars = []

    def progress(stage: str, total: int):
        bars.append(feedback.bar(total=total, desc=stage))
        return bars[-1].update
    try:
        selector = learn_from_labels(source, labels, model, screen=settings.screen, backend=settings.backend,
                                     folds=settings.folds, seed=settings.seed, jobs=settings.jobs, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    selector.save(settings.out, force=settings.force)
    if selector.figures["labels"] < 30:
        feedback.warn(f"{selector.figures['labels']} labels give wide intervals; 40 or more (spidarknet propose) "
                      "do better")
    return selector


def _labels(settings: LearnSettings, source) -> dict:
    if bool(settings.labels_dataset) == bool(settings.positives):
        raise ConfigError("give the labels as --positives CSV (with optional --negatives CSV) or as "
                          "--labels-dataset PATH, one of the two")
    if settings.negatives and not settings.positives:
        raise ConfigError("--negatives needs --positives")
    if settings.labels_dataset:
        return labels_from_dataset(source, settings.labels_dataset)
    return labels_from_selections(source, list(settings.positives), list(settings.negatives))
