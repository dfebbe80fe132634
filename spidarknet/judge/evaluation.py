"""A hit list judged against the truth: one JSON-ready dict and a text summary.

At the hit list's own threshold: accuracy, precision, recall, F1, Fβ and the confusion
matrix.  Over all thresholds: the precision-recall and ROC curves (at most
``MAX_CURVE_POINTS`` points each, evenly spaced along the curve), ROC AUC and average
precision.  Two suggested thresholds: the one with the highest F1, and the one with the
best precision among those whose recall reaches the target ("high recall"), each with
its precision, recall and F1.

A hit list whose selection (its ``hit`` column) is narrower than ``score >= threshold`` —
``detect --size-range`` or ``select --size-range`` dropped frames outside a size window —
is judged by the rule it was made with: at a threshold ``t`` it selects the frames scoring
at least ``t`` that its selection did not drop.  The frames it dropped although they score
at or above its threshold can never be selected by lowering the threshold, so every figure
over thresholds (curves, ROC AUC, average precision, suggested thresholds) counts them as
never selected; at the list's own threshold the sweep gives back the list's own selection,
so the max-F1 suggestion is never worse than the list.  Frames below the list's threshold
were never sized: the sweep counts them as inside the window.
"""

from __future__ import annotations

import math

import numpy as np

from spidarknet.core import metrics
from spidarknet.core.errors import ConfigError

MAX_CURVE_POINTS = 200


def _subsample(n: int, limit: int = MAX_CURVE_POINTS) -> np.ndarray:
    """At most ``limit`` indices of ``range(n)``, evenly spaced, first and last kept."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(int))


def _point(c: metrics.Confusion, beta: float) -> dict:
    return {"threshold": c.threshold, "precision": c.precision, "recall": c.recall,
            "f1": c.f1, f"f{beta:g}": c.f_beta(beta), "accuracy": c.accuracy,
            "selected": c.tp + c.fp}


def high_recall_choice(curve: metrics.Curve, target_recall: float) -> tuple[float, bool]:
    """The threshold with the best precision among those reaching ``target_recall``
    (the higher threshold on ties); if none reaches it, the lowest threshold.  Returns the
    threshold and whether the target was reached."""
    reaching = np.flatnonzero(curve.recall >= target_recall)
    if not len(reaching):
        return float(curve.thresholds[-1]), False
    precision = curve.precision[reaching]
    return float(curve.thresholds[reaching[int(np.argmax(precision))]]), True


def selection_confusion(selected: np.ndarray, labels: np.ndarray, threshold: float) -> metrics.Confusion:
    """Confusion counts of an explicit selection (a hit list's ``hit`` column)."""
    selected = np.asarray(selected, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    return metrics.Confusion(float(threshold), int(np.sum(selected & labels)),
                             int(np.sum(selected & ~labels)), int(np.sum(~selected & ~labels)),
                             int(np.sum(~selected & labels)))


def sweep_scores(scores: np.ndarray, threshold: float, selected: np.ndarray | None,
                 unusable: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """Scores as the threshold sweep sees them, the score below which nothing counts as
    selected, and which frames the selection dropped.

    Frames the selection dropped although they score at or above ``threshold``, and the
    ``unusable`` ones (no valid pixel: never selected), get a score below every other
    (``floor``): no threshold above ``floor`` selects them."""
    scores = np.asarray(scores, dtype=np.float64)
    dropped = (np.zeros(len(scores), dtype=bool) if selected is None
               else (scores >= threshold) & ~np.asarray(selected, dtype=bool))
    if unusable is not None:
        dropped = dropped | np.asarray(unusable, dtype=bool)
    finite = scores[np.isfinite(scores)]
    floor = float(finite.min()) - 1.0 if len(finite) else 0.0
    return np.where(dropped, floor, scores), floor, dropped


def evaluate(scores: np.ndarray, labels: np.ndarray, threshold: float, *, beta: float = 1.0,
             target_recall: float = 0.9, selected: np.ndarray | None = None,
             unusable: np.ndarray | None = None) -> dict:
    """Everything ``spidarknet evaluate`` reports, as plain Python values (NaN stays NaN).

    "At the threshold" means the hit list's selection: ``selected`` when given (its ``hit``
    column, which a size window may have narrowed), else ``scores >= threshold``.  The
    figures over thresholds follow the list's rule (see the module's docstring);
    ``unusable`` frames (no valid pixel, see :mod:`spidarknet.hits`) are never selected.
    """
    if not beta > 0:
        raise ConfigError(f"--beta must be positive, got {beta}")
    if not 0 < target_recall <= 1:
        raise ConfigError(f"--target-recall must lie in (0, 1], got {target_recall}")
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    at = (metrics.confusion(scores, labels, threshold) if selected is None
          else selection_confusion(selected, labels, threshold))
    unusable = np.zeros(len(scores), dtype=bool) if unusable is None else np.asarray(unusable, dtype=bool)
    if unusable.any():
        selected = (scores >= threshold if selected is None else np.asarray(selected, dtype=bool)) & ~unusable
    swept, floor, dropped = sweep_scores(scores, threshold, selected, unusable)
    dropped = dropped & ~unusable  # what the selection's own rule (a size window) dropped
    c = metrics.curve(swept, labels).above(floor)
    return {
        "frames": int(len(scores)), "no_valid_pixel_frames": int(unusable.sum()),
        "positives": int(labels.sum()),
        "negatives": int((~labels).sum()), "beta": beta,
        "at_threshold": {**_point(at, beta), "tp": at.tp, "fp": at.fp, "tn": at.tn, "fn": at.fn},
        "confusion_matrix": {"rows": "truth (negative, positive)",
                             "columns": "selected (no, yes)",
                             "matrix": [[at.tn, at.fp], [at.fn, at.tp]]},
        "sweep": {"rule": "score >= threshold, less the frames the hit list's selection dropped above "
                          "its threshold (never selected)",
                  "dropped_frames": int(dropped.sum()), "dropped_positives": int((dropped & labels).sum())},
        "roc_auc": metrics.roc_auc(swept, labels),
        "average_precision": c.average_precision,
        **_curves(c),
        "suggested_thresholds": _suggested(c, swept, labels, beta, target_recall),
    }


def _curves(c) -> dict:
    """The PR and ROC curves of :func:`evaluate`, each at most :data:`MAX_CURVE_POINTS` points."""
    pr_index = _subsample(len(c.thresholds))
    roc_fpr = np.r_[0.0, c.fpr]
    roc_tpr = np.r_[0.0, c.recall]
    roc_thr = np.r_[np.inf, c.thresholds]
    roc_index = _subsample(len(roc_thr))
    return {"pr_curve": {"threshold": c.thresholds[pr_index].tolist(),
                         "precision": c.precision[pr_index].tolist(),
                         "recall": c.recall[pr_index].tolist()},
            "roc_curve": {"threshold": roc_thr[roc_index].tolist(), "fpr": roc_fpr[roc_index].tolist(),
                          "tpr": roc_tpr[roc_index].tolist()}}


def _suggested(c, swept: np.ndarray, labels: np.ndarray, beta: float, target_recall: float) -> dict:
    """The thresholds :func:`evaluate` suggests (max F1, the high-recall choice, max F-beta),
    each with its figures on the swept scores."""
    def at_threshold(t: float) -> dict:
        return _point(metrics.confusion(swept, labels, t), beta)

    high, reached = high_recall_choice(c, target_recall) if len(c.thresholds) else (float("nan"), False)
    suggested = {
        "max_f1": at_threshold(c.best_f_threshold(1.0)),
        "high_recall": {**at_threshold(high), "target_recall": target_recall, "target_reached": reached},
    }
    if beta != 1.0:
        suggested[f"max_f{beta:g}"] = at_threshold(c.best_f_threshold(beta))
    return suggested


def _f(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


def summary_text(result: dict) -> str:
    """A few lines for people."""
    at = result["at_threshold"]
    beta = result["beta"]
    lines = [
        f"{result['frames']} frames, {result['positives']} positive, {result['negatives']} negative",
        f"at threshold {_f(at['threshold'])}: {at['selected']} selected, "
        f"precision {_f(at['precision'])}, recall {_f(at['recall'])}, F1 {_f(at['f1'])}"
        + (f", F{beta:g} {_f(at[f'f{beta:g}'])}" if beta != 1.0 else "")
        + f", accuracy {_f(at['accuracy'])}",
        f"confusion (truth x selected): TP {at['tp']}  FP {at['fp']}  TN {at['tn']}  FN {at['fn']}",
        f"ROC AUC {_f(result['roc_auc'])}, average precision {_f(result['average_precision'])}",
    ]
    if result.get("no_valid_pixel_frames"):
        lines.append(f"{result['no_valid_pixel_frames']} frames have no valid pixel (status no-valid-pixels): "
                     "never selected, at any threshold")
    sweep = result.get("sweep", {})
    if sweep.get("dropped_frames"):
        lines.append(f"the threshold sweep counts the {sweep['dropped_frames']} frames "
                     f"({sweep['dropped_positives']} positive) that the hit list's selection dropped above "
                     "its threshold (a size window) as never selected; frames below it count as kept")
    lines.append("suggested thresholds:")
    for name, point in result["suggested_thresholds"].items():
        label = {"max_f1": "max F1", "high_recall": f"recall >= {point.get('target_recall', 0):g}"}.get(
            name, name.replace("max_f", "max F"))
        note = "" if point.get("target_reached", True) else " (target not reached: lowest threshold)"
        lines.append(f"  {label:<16} {_f(point['threshold'])}: precision {_f(point['precision'])}, "
                     f"recall {_f(point['recall'])}, F1 {_f(point['f1'])}"
                     + (f", F{beta:g} {_f(point[f'f{beta:g}'])}" if beta != 1.0 else "")
                     + f", {point['selected']} selected{note}")
    return "\n".join(lines)
