"""Which frames to label: those that teach a selector most.

Two kinds of frame teach it most (the usual pool-based active learning of a classifier):

- **representative** ones, that cover the run: the features of a pool of the run's frames
  (every kind, photon level and size, negatives included) are clustered with k-means
  (scikit-learn) and the frame nearest each cluster's centre is proposed; clusters follow
  the run's own mix, so a kind that is 10 % of the frames gets about 10 % of the proposals;
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


def propose(measured: Measured, n: int, *, selector: Selector | None = None,
            labelled: Sequence[bool] | None = None, seed: int = 0) -> tuple[list[int], list[str]]:
    """Indices into ``measured`` of the ``n`` frames to label next, and why each ("uncertain"
    or "representative")."""
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
    picked = [int(rest[i]) for i in _nearest_to_centres(x[rest], n - len(chosen), seed)]
    chosen += picked
    why += ["representative"] * len(picked)
    return chosen, why
