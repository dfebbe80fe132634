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
  a selection learns), at evenly spaced quantiles of their photons.  Both look at the
  frames labelled already (the labels are drawn in rounds: ``label`` draws again every
  10 labels, ``propose --positives/--negatives`` leaves them out): k-means splits the
  labelled and the free frames together into as many more clusters as there are labels,
  and the proposals come from the clusters with the most free frames per labelled one; the
  photon quantiles are laid over both, and those farthest from a labelled frame taken.
  Blind to the labels, each round had taken the frames next to the last round's, near the
  same centres (twelfth session, docs/selection.md: on four development pairs, 10 labels a
  round, mean held-out F1 over 20-80 labels rose 0.006-0.042 for every rule, the labels to
  reach 0.95 moved within the draws' spread).  Of those above the
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


def _nearest_to_centres(x: np.ndarray, k: int, seed: int, covered: np.ndarray | None = None) -> list[int]:
    """Rows of ``x`` (each once) nearest the centres of ``k`` k-means clusters, those that hold
    the most frames per frame of ``covered`` (labelled already) among them: k-means splits
    ``x`` and ``covered`` together into ``k`` + len(``covered``) clusters, so a region the
    labels cover already gets no proposal while one they miss does."""
    from sklearn.cluster import KMeans
    k = min(k, len(x))
    if k <= 0:
        return []
    covered = np.zeros((0, x.shape[1])) if covered is None else covered
    both = np.vstack([x, covered])
    km = KMeans(n_clusters=min(len(both), k + len(covered)), n_init=4, random_state=seed).fit(both)
    size = np.bincount(km.labels_[:len(x)], minlength=km.n_clusters)
    held = np.bincount(km.labels_[len(x):], minlength=km.n_clusters)
    chosen: list[int] = []
    distances = ((x[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
    for c in np.argsort(-size / (1.0 + held), kind="stable"):  # the least covered clusters first
        if len(chosen) == k or size[c] == 0:
            break
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


def _round_first(x: np.ndarray, group: np.ndarray, k: int, round_particle: np.ndarray, seed: int,
                 labelled: np.ndarray) -> list[int]:
    """k representative frames of ``group`` (k-means, away from the ``labelled`` frames of the
    same side of the screen), :data:`ROUND_SHARE` of them among its round particles."""
    is_round = round_particle > 0
    rounds, others = group[is_round[group]], group[~is_round[group]]
    k_round = min(len(rounds), int(round(ROUND_SHARE * k)))
    k_other = min(len(others), k - k_round)
    k_round = min(len(rounds), k - k_other)
    chosen = []
    for part, m, covered in ((rounds, k_round, labelled[is_round[labelled]]),
                             (others, k_other, labelled[~is_round[labelled]])):
        chosen += [int(part[i]) for i in _nearest_to_centres(x[part], m, seed, x[covered])]
    return chosen


def _representative(x: np.ndarray, candidates: np.ndarray, n: int, values: dict, screen: float | None,
                    seed: int, labelled: np.ndarray) -> list[int]:
    """n representative candidates: with a ``screen``, a quarter among those below it (at
    quantiles of their photons) and the rest among those above (where the singles and their
    look-alikes are: k-means), else k-means among all; each away from the ``labelled`` frames."""
    scores, photons = values["score"], values["signal_photons"]
    if screen is None:
        parts = [(candidates, n, labelled)]
    else:
        below, above = candidates[scores[candidates] < screen], candidates[scores[candidates] >= screen]
        n_below = min(len(below), max(1, int(round(BELOW_SCREEN_SHARE * n)))) if len(below) else 0
        n_above = min(len(above), n - n_below)
        parts = [(above, n_above, labelled[scores[labelled] >= screen]),
                 (below, n - n_above, labelled[scores[labelled] < screen])]
    group, k, covered = parts[0]
    chosen = _round_first(x, group, k, values["one_round_particle"], seed, covered)
    if len(parts) > 1:
        chosen += _photon_quantiles(*parts[1], photons)
    return chosen


def _photon_quantiles(group: np.ndarray, k: int, labelled: np.ndarray, photons: np.ndarray) -> list[int]:
    """k frames of ``group`` at evenly spaced quantiles of their photons and the ``labelled``
    frames', those quantiles farthest from a labelled frame: below the screen the fit's
    numbers are mostly missing, and the photons tell empty, faint and huge frames apart."""
    if k <= 0 or len(group) == 0:
        return []
    both = np.concatenate([group, labelled])
    order = both[np.argsort(np.nan_to_num(photons[both], nan=0.0), kind="stable")]
    taken = ~np.isin(order, group)
    slots = k + int(taken.sum())
    at = ((np.arange(slots) + 0.5) * len(order) / slots).astype(int)
    ranks = np.flatnonzero(taken)
    gap = np.abs(at[:, None] - ranks[None, :]).min(axis=1) if len(ranks) else np.full(slots, len(order))
    chosen: list[int] = []
    for slot in np.sort(np.argsort(-gap, kind="stable")[:k]):
        free = np.flatnonzero(~taken)
        row = free[np.argmin(np.abs(free - at[slot]))]
        chosen.append(int(order[row]))
        taken[row] = True
    return chosen


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
    picked = _representative(x, rest, n - len(chosen), measured.values, screen, seed, np.flatnonzero(~free))
    chosen += picked
    why += ["representative"] * len(picked)
    return chosen, why
