"""Which frames to label: those that teach a selector most.

Two kinds of frame teach it most (the usual pool-based active learning of a classifier):

- **representative** ones, that cover the run: the features of a pool of the run's frames
  (every kind, photon level and size, negatives included) are clustered with k-means
  (scikit-learn) and the frame nearest each cluster's centre is proposed; clusters follow
  the run's own mix, three quarters of them among the frames the network lets through
  (where the selection is made); a quarter are frames below the network's screen (empty
  shots, faint frames, droplets), at evenly spaced quantiles of their photons;
- **uncertain** ones, near the boundary of the selector learnt so far (probability near
  0.5), spread over the boundary the same way (k-means among the most uncertain).

Without a selector every proposal is representative; with one, half are uncertain.  Frames
already labelled are never proposed.  The pool is every frame the network lets through
(its screen) plus an equal number, at most, of those it does not: empty shots and faint
frames are labelled too, and are what a selection must learn to leave.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spidarknet.selection.features import FEATURES, Measured
from spidarknet.selection.selector import Selector, standardise


def pool_index(scores: np.ndarray, screen: float, size: int, seed: int = 0,
               exclude: np.ndarray | None = None) -> np.ndarray:
    """The frames to measure for proposals: up to ``size`` of those scoring at least
    ``screen`` and as many, at most, of the others (at random, seeded), sorted; never
    those ``exclude`` marks (labelled already)."""
    rng = np.random.default_rng(seed)
    scores = np.asarray(scores)
    free = np.ones(len(scores), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    above, below = np.flatnonzero(free & (scores >= screen)), np.flatnonzero(free & (scores < screen))
    above = rng.permutation(above)[:size]
    below = rng.permutation(below)[:max(len(above), 1)]
    return np.sort(np.concatenate([above, below]))


def _nearest_to_centres(x: np.ndarray, k: int, seed: int) -> list[int]:
    """Rows of ``x`` nearest the centres of k-means' ``k`` clusters (each row once)."""
    from sklearn.cluster import KMeans
    k = min(k, len(x))
    if k <= 0:
        return []
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    chosen: list[int] = []
    distances = ((x[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
    for c in np.argsort(np.bincount(km.labels_, minlength=k))[::-1]:  # larger clusters first
        for row in np.argsort(distances[:, c]):
            if row not in chosen:
                chosen.append(int(row))
                break
    return chosen


#: share of the representative proposals taken among the frames below the network's screen
BELOW_SCREEN_SHARE = 0.25


def _representative(x: np.ndarray, candidates: np.ndarray, n: int, scores: np.ndarray, photons: np.ndarray,
                    screen: float | None, seed: int) -> list[int]:
    """n representative candidates: with a ``screen``, a quarter among those below it (at
    quantiles of their photons) and the rest among those above (where the singles and their
    look-alikes are: k-means), else k-means among all."""
    if screen is None:
        parts = [(candidates, n)]
    else:
        below, above = candidates[scores[candidates] < screen], candidates[scores[candidates] >= screen]
        n_below = min(len(below), max(1, round(BELOW_SCREEN_SHARE * n))) if len(below) else 0
        n_above = min(len(above), n - n_below)
        parts = [(above, n_above), (below, n - n_above)]
    chosen = [int(group[i]) for group, k in parts[:1] for i in _nearest_to_centres(x[group], k, seed)]
    if len(parts) > 1:
        chosen += _photon_quantiles(*parts[1], photons)
    return chosen


def _photon_quantiles(group: np.ndarray, k: int, photons: np.ndarray) -> list[int]:
    """k frames of ``group`` at evenly spaced quantiles of their photons: below the screen the
    fit's numbers are mostly missing, and the photons tell empty, faint and huge frames apart."""
    if k <= 0 or len(group) == 0:
        return []
    order = group[np.argsort(np.nan_to_num(photons[group], nan=0.0), kind="stable")]
    return [int(order[int((j + 0.5) * len(order) / k)]) for j in range(min(k, len(order)))]


def propose(measured: Measured, n: int, *, selector: Selector | None = None,
            labelled: Sequence[bool] | None = None, seed: int = 0,
            screen: float | None = None) -> tuple[list[int], list[str]]:
    """Indices into ``measured`` of the ``n`` frames to label next, and why each ("uncertain"
    or "representative"); with the network's ``screen``, three quarters of the representative
    ones are frames the network lets through (the selection is made among them)."""
    free = np.ones(len(measured), dtype=bool) if labelled is None else ~np.asarray(labelled, dtype=bool)
    candidates = np.flatnonzero(free)
    if len(candidates) == 0 or n <= 0:
        return [], []
    x, _, means, scales = standardise(measured, FEATURES)
    x = np.clip((x - np.asarray(means)) / np.asarray(scales), -4.0, 4.0)
    chosen, why = [], []
    if selector is not None:
        p = selector.probability(measured)[candidates]
        near = candidates[np.argsort(np.abs(p - 0.5))[:3 * (n // 2)]]
        picked = [int(near[i]) for i in _nearest_to_centres(x[near], n // 2, seed)]
        chosen += picked
        why += ["uncertain"] * len(picked)
    rest = np.setdiff1d(candidates, chosen)
    picked = _representative(x, rest, n - len(chosen), measured.values["score"], measured.values["signal_photons"],
                             screen, seed)
    chosen += picked
    why += ["representative"] * len(picked)
    return chosen, why
