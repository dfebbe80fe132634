"""``evaluate`` as a library function: a hit list against the truth — P/R/F1, curves, thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from spidarknet.core.outputs import check_destination, write_json
from spidarknet.hits import read_selected
from spidarknet.judge.breakdown import PHOTON_EDGES, breakdowns
from spidarknet.judge.evaluation import evaluate
from spidarknet.judge.truth import load_truth


@dataclass
class EvaluateSettings:
    """What ``spidarknet evaluate`` is asked to do (its options, by the same names)."""

    hits: str
    truth_dataset: str | None = None    # a per-frame 0/1 dataset in the frame files ...
    truth: str | None = None            # ... or a CSV of the truth
    common_only: bool = False
    beta: float = 1.0
    target_recall: float = 0.9
    by: Sequence[str] = ()              # breakdowns: datasets or columns
    photons_dataset: str | None = None
    photon_bins: Sequence[float] = field(default_factory=lambda: list(PHOTON_EDGES))
    out: str | None = None              # the figures as JSON
    force: bool = False


def evaluate_to_file(settings: EvaluateSettings) -> dict:
    """Run ``spidarknet evaluate``: the figures (and breakdowns), written to ``out`` if given;
    ``frames_without_truth`` and ``truth_frames_not_scored`` count what --common-only left out."""
    if settings.out:
        check_destination(settings.out, settings.force, "evaluation")
    hits, flags = read_selected(settings.hits)
    truth = load_truth(hits, dataset=settings.truth_dataset, csv_path=settings.truth,
                       common_only=settings.common_only)
    result = evaluate(truth.hits.scores, truth.labels, truth.hits.threshold, beta=settings.beta,
                      target_recall=settings.target_recall, selected=flags[truth.index],
                      unusable=truth.hits.unusable)
    parts = breakdowns(truth, flags[truth.index], by=list(settings.by), truth_csv=settings.truth,
                       photons_dataset=settings.photons_dataset, photon_edges=settings.photon_bins)
    result = {"hits": settings.hits, "truth": truth.source, "frames_without_truth": truth.dropped,
              "truth_frames_not_scored": truth.unscored, **result, **parts}
    if settings.out:
        write_json(result, settings.out, force=settings.force, what="evaluation")
    return result
