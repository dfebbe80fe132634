"""Which frames to label: those that teach a selector most.

Two kinds of frame teach it most (the usual pool-based active learning of a classifier):

- **uncertain** ones, near the boundary of the selector learnt so far (probability near
  0.5), spread along that boundary (k-means among the most uncertain, so that ten
  proposals are not ten copies of one frame): once a selector exists,
  :data:`UNCERTAIN_SHARE` of the proposals;
- **representative** ones, that cover the run: the features of the frames the network lets
  through (its screen: where the selection is made, every kind, photon level and size) are
  clustered with k-means (scikit-learn) and the frame nearest each cluster's centre is
  proposed; :data:`BELOW_SCREEN_SHARE` of them are frames below the network's screen (empty
  shots, faint frames, droplets, and singles the network misses, which lower the screen
  a selection learns), at evenly spaced quantiles of their photons.  Of those above the
  screen, :data:`ROUND_SHARE` are taken among the frames the fit calls one round particle
  (a size, misfit at most 0.5, no second particle's fringes): every single of a run lies
  there, and a rule narrower than "single" (bright, round, centred, a narrower size) is
  learnt from its positives, which are rare elsewhere.  On the development pairs
  (8101/8102, 8201/8202, 8401/8402; 40 proposed labels, 3 draws each) this raised mean
  held-out F1 for ``narrow`` from 0.51 to 0.93 and ``spheres`` from 0.86 to 0.93, the
  others within the draws' spread (0.9 of them: 0.95 and 0.90, but ``bright`` and
  ``centred`` lower).

Frames already labelled are never proposed, and uncertain ones are taken among the frames
the network lets through: a frame below the screen is never selected, so its label
teaches only the screen.  The shares were chosen on the development runs (8101/8102,
8201/8202; docs/selection.md): three quarters uncertain or a tenth below the screen did
no better within the draws' spread (40 labels: mean held-out F1 over the five rules 0.83-0.87
against 0.88).  The pool is every frame the network lets through plus an equal
number, at most, of those it does not.
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
#: share of the proposals that are uncertain frames, once a selector exists
UNCERTAIN_SHARE = 0.5
#: the most uncertain frames, per uncertain proposal, among which k-means spreads them
UNCERTAIN_POOL = 3
#: share of the representative proposals above the screen taken among the frames the fit
#: calls one round particle (``one_round_particle``: where every single is)
ROUND_SHARE = 0.75


def _round_first(x: np.ndarray, group: np.ndarray, k: int, round_particle: np.ndarray, seed: int) -> list[int]:
    """k representative frames of ``group`` (k-means), :data:`ROUND_SHARE` of them among its
    round particles."""
    rounds, others = group[round_particle[group] > 0], group[~(round_particle[group] > 0)]
    k_round = min(len(rounds), int(round(ROUND_SHARE * k)))
    k_other = min(len(others), k - k_round)
    k_round = min(len(rounds), k - k_other)
    return [int(part[i]) for part, m in ((rounds, k_round), (others, k_other))
            for i in _nearest_to_centres(x[part], m, seed)]


def _representative(x: np.ndarray, candidates: np.ndarray, n: int, scores: np.ndarray, photons: np.ndarray,
                    round_particle: np.ndarray, screen: float | None, seed: int) -> list[int]:
    """n representative candidates: with a ``screen``, a quarter among those below it (at
    quantiles of their photons) and the rest among those above (where the singles and their
    look-alikes are: k-means), else k-means among all."""
    if screen is None:
        parts = [(candidates, n)]
    else:
        below, above = candidates[scores[candidates] < screen], candidates[scores[candidates] >= screen]
        n_below = min(len(below), max(1, int(round(BELOW_SCREEN_SHARE * n)))) if len(below) else 0
        n_above = min(len(above), n - n_below)
        parts = [(above, n_above), (below, n - n_above)]
    chosen = _round_first(x, *parts[0], round_particle, seed)
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
    or "representative"); with the network's ``screen``, uncertain frames are taken among
    those it lets through and :data:`BELOW_SCREEN_SHARE` of the representative ones below it."""
    free = np.ones(len(measured), dtype=bool) if labelled is None else ~np.asarray(labelled, dtype=bool)
    candidates = np.flatnonzero(free)
    if len(candidates) == 0 or n <= 0:
        return [], []
    x, _, means, scales = standardise(measured, FEATURES)
    x = np.clip((x - np.asarray(means)) / np.asarray(scales), -4.0, 4.0)
    chosen, why = [], []
    if selector is not None:
        where = candidates if screen is None else candidates[measured.values["score"][candidates] >= screen]
        k = min(len(where), int(round(UNCERTAIN_SHARE * n)))
        p = selector.probability(measured)[where]
        near = where[np.argsort(np.abs(p - 0.5), kind="stable")[:UNCERTAIN_POOL * k]]
        picked = [int(near[i]) for i in _nearest_to_centres(x[near], k, seed)]
        chosen += picked
        why += ["uncertain"] * len(picked)
    rest = np.setdiff1d(candidates, chosen)
    v = measured.values
    picked = _representative(x, rest, n - len(chosen), v["score"], v["signal_photons"], v["one_round_particle"],
                             screen, seed)
    chosen += picked
    why += ["representative"] * len(picked)
    return chosen, why
