"""Judging scores against truth: confusion counts, P/R/F1/Fβ, PR and ROC curves, thresholds.

A frame is selected when its score is at or above the threshold.  Precision with no
selected frame is defined as 1 (nothing selected, nothing wrong); recall with no
positive frame is undefined and reported as NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Confusion:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        selected = self.tp + self.fp
        return self.tp / selected if selected else 1.0

    @property
    def recall(self) -> float:
        positives = self.tp + self.fn
        return self.tp / positives if positives else float("nan")

    @property
    def accuracy(self) -> float:
        total = self.tp + self.fp + self.tn + self.fn
        return (self.tp + self.tn) / total if total else float("nan")

    def f_beta(self, beta: float = 1.0) -> float:
        p, r = self.precision, self.recall
        b2 = beta * beta
        denominator = b2 * p + r
        return (1 + b2) * p * r / denominator if denominator > 0 else 0.0

    @property
    def f1(self) -> float:
        return self.f_beta(1.0)

    def as_dict(self, beta: float | None = None) -> dict:
        out = asdict(self)
        out.update(precision=self.precision, recall=self.recall, f1=self.f1, accuracy=self.accuracy)
        if beta is not None:
            out[f"f{beta:g}"] = self.f_beta(beta)
        return out


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError("scores and labels must be 1-D arrays of the same length")
    return scores, labels


def confusion(scores, labels, threshold: float) -> Confusion:
    scores, labels = _check(scores, labels)
    selected = scores >= threshold
    return Confusion(float(threshold), int(np.sum(selected & labels)), int(np.sum(selected & ~labels)),
                     int(np.sum(~selected & ~labels)), int(np.sum(~selected & labels)))


@dataclass
class Curve:
    """Counts at every distinct score used as a threshold, highest threshold first."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int

    @property
    def precision(self) -> np.ndarray:
        return self.tp / np.maximum(self.tp + self.fp, 1)

    @property
    def recall(self) -> np.ndarray:
        return self.tp / self.n_pos if self.n_pos else np.full(len(self.tp), np.nan)

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / self.n_neg if self.n_neg else np.full(len(self.fp), np.nan)

    def f_beta(self, beta: float = 1.0) -> np.ndarray:
        p, r = self.precision, self.recall
        b2 = beta * beta
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + b2) * p * r / (b2 * p + r)
        return np.nan_to_num(f)

    def best_f_threshold(self, beta: float = 1.0) -> float:
        """The threshold with the highest Fβ (the higher one on ties); NaN without points or positives."""
        if len(self.thresholds) == 0 or not self.n_pos:
            return float("nan")
        return float(self.thresholds[int(np.argmax(self.f_beta(beta)))])

    @property
    def average_precision(self) -> float:
        """Σ precision × Δrecall over the points, from recall 0 (NaN without positives)."""
        if not self.n_pos:
            return float("nan")
        return float(np.sum(np.diff(np.r_[0.0, self.recall]) * self.precision))

    def above(self, threshold: float) -> "Curve":
        """The points whose threshold is above ``threshold``."""
        keep = self.thresholds > threshold
        return Curve(self.thresholds[keep], self.tp[keep], self.fp[keep], self.n_pos, self.n_neg)


def curve(scores, labels) -> Curve:
    scores, labels = _check(scores, labels)
    order = np.argsort(-scores, kind="stable")
    s, lab = scores[order], labels[order]
    tp = np.cumsum(lab)
    fp = np.cumsum(~lab)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, int)
    return Curve(thresholds=s[last], tp=tp[last], fp=fp[last], n_pos=int(lab.sum()), n_neg=int((~lab).sum()))


def roc_auc(scores, labels) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores, labels = _check(scores, labels)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    boundaries = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1, len(values)]
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        ranks[order[start:stop]] = (start + stop + 1) / 2.0  # 1-based average rank
    return ranks


def average_precision(scores, labels) -> float:
    return curve(scores, labels).average_precision


def best_f_threshold(scores, labels, beta: float = 1.0) -> float:
    """The threshold (a score value) with the highest Fβ; the higher one on ties."""
    return curve(scores, labels).best_f_threshold(beta)
