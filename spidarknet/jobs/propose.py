"""``propose`` as a library function: the frames of a run whose labels teach a selection most."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spidarknet.core.errors import ConfigError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.outputs import atomic_path, check_destination
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.frames.options import FrameOptions, open_source
from spidarknet.selection.pipeline import labelled_among, measure_pool, score_frames
from spidarknet.selection.propose import propose
from spidarknet.selection.selector import Selector

COLUMNS = ["file", "dataset", "index", "why", "score", "probability", "diameter_nm", "signal_photons", "misfit",
           "second_particle_z"]


@dataclass
class ProposeSettings:
    """What ``spidarknet propose`` is asked to do (its options, by the same names)."""

    frames: FrameOptions
    out: str
    n: int = 40                         # frames to propose
    selector: str | None = None         # a selection learnt so far: half the frames near its boundary
    positives: Sequence[str] = ()       # frames labelled already (left out)
    negatives: Sequence[str] = ()
    weights: str | None = None          # default: the selector's, else the built-in model
    pool: int = 2000                    # frames fitted to choose from
    seed: int = 0
    jobs: int | None = None
    force: bool = False


@dataclass
class Proposal:
    """The frames proposed (``why`` per frame: representative, uncertain, ...), of how many."""

    out: str
    why: list
    pool: int                           # frames fitted (the labelled ones among them)
    frames: int                         # frames scored


def propose_to_file(settings: ProposeSettings, feedback: Feedback = SILENT) -> Proposal:
    """Run ``spidarknet propose``: score every frame, fit a pool of them, choose the frames to
    label, write them as a CSV (:data:`COLUMNS`)."""
    if settings.n < 1 or settings.pool < 1:
        raise ConfigError("--n and --pool must be at least 1")
    check_destination(settings.out, settings.force, "proposal list")
    selector = Selector.load(settings.selector) if settings.selector else None
    weights = settings.weights or (selector.weights.get("path") if selector else None) or str(builtin_weights())
    model = load_model(weights)
    screen = selector.screen if selector else model.validation.get("screening_threshold", model.threshold)
    source = open_source(settings.frames)
    with feedback.bar(total=len(source), desc="score") as bar:
        hits = score_frames(source, model, on_chunk=bar.update)
    labelled = labelled_among(source, hits, list(settings.positives) + list(settings.negatives))
    with feedback.bar(desc="fit") as bar:
        pool, measured = measure_pool(source, hits, screen, size=settings.pool, seed=settings.seed,
                                      labelled=labelled, jobs=settings.jobs, on_frames=bar.update, with_labelled=True)
    chosen, why = propose(measured, settings.n, selector=selector, labelled=labelled[pool], seed=settings.seed,
                          screen=screen)
    p = selector.probability(measured) if selector else np.full(len(measured), np.nan)
    _write(settings, measured, chosen, why, p)
    return Proposal(settings.out, list(why), len(pool), len(hits))


def _write(settings: ProposeSettings, measured, chosen, why, p) -> None:
    def cell(value: float) -> str:
        return f"{value:.4g}" if np.isfinite(value) else ""
    v = measured.values
    with atomic_path(settings.out, settings.force, "proposal list") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for i, reason in zip(chosen, why):
                key = measured.keys[i]
                writer.writerow([key.file, key.dataset, key.index, reason, cell(v["score"][i]), cell(p[i]),
                                 *(cell(v[name][i]) for name in COLUMNS[6:])])
