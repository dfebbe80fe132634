"""A selection learnt from a few of the user's labels: a calibrated classifier on the features.

What the people who label a run call *single* (bright enough, round, clean, the sample's
size) is written in the numbers the pipeline measures of each frame
(:mod:`spidarknet.selection.features`).  :func:`learn_selector` fits scikit-learn's
L1-regularised logistic regression to them, its strength chosen by an inner
cross-validation on the log loss (``GridSearchCV``), so its output is a probability.  L1
rather than L2 because a labeller's rule rests on few of the numbers: on made-up frames
with 40 labels (seeds 10-17) L1 reached held-out F1 0.93 / 0.89 / 0.61 for a photon cut, a
photon-and-misfit rule and a narrow size window, L2 0.89 / 0.87 / 0.37.  The size window's
own verdict (``one_round_particle``) is one of the features: on the development runs
(seeds 8101/8102, 40 labels) it raised held-out F1 for the simulator's label from 0.90 to
0.93.  Less rigid models from scikit-learn (random forest, gradient boosting, an RBF SVM,
logistic regression on splines or hinges), class weights and other criteria for the
strength were compared on the development runs (8101/8102, 8201/8202; docs/selection.md):
with all 500 frames of a run labelled the trees gain up to 0.06 on a rule and the rest
nothing, with 40 labels the trees and splines lose 0.1-0.5.

**The design.**  Each feature is made robust first (photons and χ² on a log scale, the
misfit and second-particle score clipped), a missing value (no fit) replaced by the
labelled frames' median (``fit_ok`` says it was missing), then standardised on the labelled
frames and clipped to ±:data:`CLIP` σ.  The classifier sees each standardised feature ``z``
and its square ``z²``: a window (a size range, a photon band) is a quadratic in ``z``, so
"between 60 and 70 nm" is as learnable as "above 1,000 photons".  It also sees the hinges
``max(0, z - t)`` at the :data:`KNOTS` ``t``: a sum of hinges is a bent line, so a one-sided
cut can be steep where it cuts and flat where the labels pass (a parabola steep enough at a
cut tilts its whole passing side; ninth session, docs/selection.md: with every frame of run A
labelled, `bright` 0.890 → 0.925, `spheres` 0.923 → 0.943, `centred` 0.939 → 0.954 held-out
F1 on four development pairs).  Files written before the hinges (no ``knots``) keep z and z².

**The gates.**  A labeller's rule is often a conjunction: a single of the sample's size AND
bright enough, AND round, AND not near the beam stop's edge.  A sum of terms approximates an
AND poorly from few labels; a product of *gates* states it: each gate is a logistic step
in one standardised feature, ``σ(slope · side · (z - cut))``.  The gates are found
greedily: among the one-sided cuts at a feature's extreme labelled single, the one that cuts
off most of the labelled negatives still let through, placed midway between that single
and the nearest negative it cuts off (the widest margin), its slope such that both sit at
:data:`GATE_EDGE` from the cut's side; until no negative is left or none can be cut off
without losing a single.  No iterative optimiser: each cut is a margin between labelled
frames.  Three model classes (:data:`MODELS`): ``hinge`` (the logistic regression alone),
``gates`` (the gates alone, on the frames the network lets through) and ``hinge_and_gates``
(the logistic regression's probability times the gates that cut off what it lets
through).  The selection takes the class whose F1 cross-validated on its own labels is
highest (ties to the first), so the labels say which shape their rule has
(``figures["model_cv_f1"]``; docs/selection.md, tenth session), from :data:`GATES_MIN_SINGLES`
labelled singles on: with fewer the box around them is too tight and the choice too noisy
(40 labels on the development pairs: the gates lowered held-out F1).  With fewer singles the
class is ``hinge_and_gates`` (:data:`FEW_SINGLES_MODEL`) with gates of stronger evidence: the
regression rejects its own few negatives, so the negatives it lets through are found out of
fold (scikit-learn's ``cross_val_predict``), and a gate must cut off at least
:data:`FEW_SINGLES_GATE_CUT` of them (eleventh session, docs/selection.md: 40 proposed labels
on six development pairs, `bright` 0.796 → 0.807 and `centred` 0.849 → 0.872, the others
within the pairs' spread).  Its few singles pull the regression's probabilities down (most
errors with 40 labels are singles rejected), so its probability cut is the one of
:data:`FEW_SINGLES_THRESHOLDS` whose F1 on the labels, out of fold, is highest (twelfth
session, docs/selection.md: 40 random labels on seven development pairs, `bright` and
`centred` gain, `spheres` loses; 40 proposed nearly unchanged).  With every frame of a development run labelled the gates raised held-out F1 for
``bright`` from 0.929 to 0.951 and ``spheres`` from 0.939 to 0.972 (mean of five pairs).  Files of formats 1 and 2
are hinge models and apply as before.

**The network screens.**  A frame the network scores below the selection's ``screen``
never reaches the fit in ``detect --selector`` and is never selected; the cross-validated
figures count labelled singles below it as missed.  The screen is the model card's
screening threshold or, where lower, the score below which 2 % of the labelled singles lie.

**The file** (``selection.json``) holds everything needed to apply the selector without
scikit-learn's objects (no pickle): the features, the medians, means and scales, the
knots, the coefficients, the model class and its gates, the decision threshold, the screen,
the weights it was learnt with (path and SHA-256), and the cross-validated figures with their
bootstrap intervals.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.metrics import confusion, roc_auc
from spidarknet.core.outputs import write_json
from spidarknet.selection.features import FEATURES, Measured

#: 3: the model class and its gates; 2: the hinges (``knots``); 1: z and z² only (files of
#: formats 1 and 2 are hinge models without gates, and still apply)
SELECTOR_FORMAT = 3
#: standardised features are clipped to ±CLIP before squaring: one wild frame does not decide
CLIP = 4.0
#: the selection's probability cut
DECISION_THRESHOLD = 0.5
#: labelled singles the screen may lose, at most
SCREEN_LOSS = 0.02
#: the features a selector uses by default (all that the pipeline measures)
DEFAULT_FEATURES = FEATURES
#: where the hinges ``max(0, z - t)`` of every standardised feature bend (σ)
KNOTS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
#: the model classes a selection chooses among by cross-validation on its own labels: the
#: logistic regression alone, the gates alone (a conjunction of one-sided cuts), or both
MODELS = ("hinge", "gates", "hinge_and_gates")
#: the classes are chosen by cross-validation from this many labelled singles on (below,
#: :data:`FEW_SINGLES_MODEL`: with 40 labels the choice is too noisy)
GATES_MIN_SINGLES = 20
#: the model class below :data:`GATES_MIN_SINGLES` labelled singles (where ``models`` holds it):
#: the regression, and gates on the negatives it lets through out of fold
FEW_SINGLES_MODEL = "hinge_and_gates"
#: with few singles a gate must cut off at least this many labelled negatives (one is chance)
FEW_SINGLES_GATE_CUT = 2
#: with few singles the probability cut is the one of these whose F1 on the labels, out of fold,
#: is highest (the lowest of those equal): the regression's few singles pull its probabilities down
FEW_SINGLES_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
#: a gate's value at the labelled frame nearest its cut on the side it keeps
GATE_EDGE = 0.9
#: the narrowest half gap (σ) between a gate's cut and the labelled frames beside it
GATE_MIN_HALF_GAP = 0.05


def _robust(name: str, values: np.ndarray) -> np.ndarray:
    """The feature on the scale the classifier sees (log for photons and χ², clipped tails)."""
    v = np.asarray(values, dtype=np.float64)
    if name in ("signal_photons", "fit_quality", "frame_photons"):
        return np.log10(np.clip(v, 1e-3, None))
    if name == "background_photons_per_pixel":
        return np.log10(np.clip(v, 0.0, None) + 1e-4)
    if name in ("second_particle_excess", "misfit"):
        return np.clip(v, -1.0, 5.0)
    if name == "second_particle_z":
        return np.clip(v, 0.0, 25.0)
    return v


def _unrobust(name: str, value: float) -> float:
    """The feature's own value at ``value`` on the classifier's scale (:func:`_robust` undone)."""
    if name in ("signal_photons", "fit_quality", "frame_photons"):
        return 10.0 ** value
    if name == "background_photons_per_pixel":
        return 10.0 ** value - 1e-4
    return value


@dataclass
class Selector:
    """A learnt selection (see the module docstring); :meth:`probability` applies it."""

    features: list[str]
    medians: list[float]
    means: list[float]
    scales: list[float]
    coef: list[float]            # per feature z, then per feature z², then per feature its hinges
    intercept: float
    screen: float
    threshold: float = DECISION_THRESHOLD
    weights: dict = field(default_factory=dict)        # {"path", "sha256"} of the network
    figures: dict = field(default_factory=dict)        # cross-validated P/R/F1 with intervals, labels
    format: int = SELECTOR_FORMAT
    knots: list[float] = field(default_factory=list)   # the hinges' bends (empty: z and z² only)
    model: str = "hinge"                               # one of MODELS (files before format 3: hinge)
    gates: list = field(default_factory=list)          # [feature, side (+1 keeps above, -1 below), cut, slope]

    def design(self, measured: Measured) -> np.ndarray:
        """The classifier's input for ``measured`` frames: (n, k (2 + len(knots)))."""
        missing = [name for name in self.features if name not in measured.values]
        if missing:
            raise InputError(f"the frames lack the selector's features {', '.join(missing)}")
        x = np.column_stack([_robust(name, measured.values[name]) for name in self.features])
        x = np.where(np.isfinite(x), x, np.asarray(self.medians))
        z = np.clip((x - np.asarray(self.means)) / np.asarray(self.scales), -CLIP, CLIP)
        hinges = np.maximum(0.0, z[:, :, None] - np.asarray(self.knots, dtype=np.float64)).reshape(len(z), -1)
        return np.hstack([z, z * z, hinges])

    def probability(self, measured: Measured) -> np.ndarray:
        """P(single) per frame: the logistic regression's (calibrated) probability, times each
        gate's (a logistic step in one standardised feature) where the model has gates."""
        design = self.design(measured)
        p = np.ones(len(design))
        if self.model != "gates":
            p = _sigmoid(design @ np.asarray(self.coef) + self.intercept)
        for name, side, cut, slope in self.gates:
            p = p * _sigmoid(slope * side * (design[:, self.features.index(name)] - cut))
        return p

    def decide(self, measured: Measured) -> tuple[np.ndarray, np.ndarray]:
        """(selected, probability): screened by the network and above the threshold."""
        p = self.probability(measured)
        return (measured.values["score"] >= self.screen) & (p >= self.threshold), p

    def weight_table(self) -> list[tuple[str, float, float]]:
        """(feature, weight of z, weight of z²), largest first (counting its hinges' weights)."""
        k, m = len(self.features), len(self.knots)
        bends = [sum(abs(c) for c in self.coef[2 * k + i * m:2 * k + (i + 1) * m]) for i in range(k)]
        rows = [(name, self.coef[i], self.coef[k + i], bends[i]) for i, name in enumerate(self.features)]
        return [r[:3] for r in sorted(rows, key=lambda r: -(abs(r[1]) + abs(r[2]) + r[3]))]

    def gate_table(self) -> list[tuple[str, str, float]]:
        """(feature, "above" or "below", the cut in the feature's own units) per gate."""
        rows = []
        for name, side, cut, _ in self.gates:
            i = self.features.index(name)
            rows.append((name, "above" if side > 0 else "below",
                         _unrobust(name, cut * self.scales[i] + self.means[i])))
        return rows

    # -- file ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, force: bool = False) -> None:
        write_json(asdict(self), path, force, "selection")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Selector":
        try:
            with open(path) as handle:
                values = json.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"selection {path} does not exist; make one with 'spidarknet learn'") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read selection {path}: {exc}") from None
        try:
            selector = cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{path} is not a selection written by 'spidarknet learn' ({exc})") from None
        selector.check(str(path))
        return selector

    def check(self, where: str) -> None:
        """Consistency of a selection read from a file."""
        if self.format > SELECTOR_FORMAT:
            raise ConfigError(f"{where} was written by a newer spidarknet (format {self.format}); upgrade")
        unknown = [name for name in self.features if name not in FEATURES]
        if unknown:
            raise ConfigError(f"{where} uses features this spidarknet does not measure: {', '.join(unknown)}")
        k = len(self.features)
        if not (len(self.medians) == len(self.means) == len(self.scales) == k
                and len(self.coef) == k * (2 + len(self.knots))):
            raise ConfigError(f"{where} is damaged: {k} features and {len(self.knots)} knots but "
                              f"{len(self.coef)} coefficients")
        if self.model not in MODELS:
            raise ConfigError(f"{where} names the model {self.model!r}; this spidarknet knows {', '.join(MODELS)}")
        if any(len(g) != 4 or g[0] not in self.features or g[1] not in (-1, 1) for g in self.gates):
            raise ConfigError(f"{where} is damaged: each gate is [feature of the selection, +1 or -1, cut, slope]")

    def check_weights(self, path: str | os.PathLike, sha256: str) -> None:
        """Refuse a network other than the one the selection was learnt with."""
        if self.weights.get("sha256") and self.weights["sha256"] != sha256:
            raise ConfigError(f"the selection was learnt with the network {self.weights.get('path')} "
                              f"(SHA-256 {self.weights['sha256'][:12]}…), not {path} ({sha256[:12]}…): its "
                              "scores would mean something else. Give --weights "
                              f"{self.weights.get('path')}, or learn the selection again with these weights")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


def screen_for(scores: np.ndarray, labels: np.ndarray, card_screen: float | None) -> float:
    """The network's screen: the card's, or lower where it would lose more than
    :data:`SCREEN_LOSS` of the labelled singles."""
    positives = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(labels, dtype=bool)])
    screen = 1.0 if card_screen is None else float(card_screen)
    if len(positives):
        keep = positives[int(math.floor(SCREEN_LOSS * len(positives)))]
        screen = min(screen, math.floor(keep * 1e4) / 1e4)
    return max(screen, 0.0)


def standardise(measured: Measured, features) -> tuple[np.ndarray, list, list, list]:
    x = np.column_stack([_robust(name, measured.values[name]) for name in features])
    medians = [float(np.nanmedian(c)) if np.isfinite(c).any() else 0.0 for c in x.T]
    x = np.where(np.isfinite(x), x, np.asarray(medians))
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales < 1e-9] = 1.0
    return x, medians, means.tolist(), scales.tolist()


def _inner_folds(labels: np.ndarray) -> int:
    return int(max(2, min(5, np.bincount(labels.astype(int), minlength=2).min())))


def _l1() -> dict:
    """scikit-learn's words for an L1 penalty: ``l1_ratio`` from 1.8 on, ``penalty`` before."""
    import sklearn
    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    return {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}


def fit_selector(measured: Measured, labels, screen: float, *, features=DEFAULT_FEATURES,
                 seed: int = 0, models=MODELS) -> Selector:
    """The selector for labelled frames (``labels`` 1 single, 0 not), without figures; the
    same labels and ``seed`` give the same selector (liblinear shuffles with the seed).  Of
    ``models`` the one whose cross-validated F1 on these labels is highest is taken (the
    first of those equal); ``figures["model_cv_f1"]`` holds each one's.  With fewer than
    :data:`GATES_MIN_SINGLES` labelled singles only the first of ``models`` is fitted."""
    labels = np.asarray(labels, dtype=int)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 2:
        raise InputError(f"a selection needs at least 2 labelled frames of each class; got {counts[1]} single "
                         f"and {counts[0]} not single")
    models = tuple(models)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models must be among {MODELS}, got {models}")
    few = counts[1] < GATES_MIN_SINGLES
    if few:
        models = (FEW_SINGLES_MODEL,) if FEW_SINGLES_MODEL in models else models[:1]
    scores = _model_scores(measured, labels, screen, list(features), seed, models)
    chosen = max(models, key=lambda m: (scores.get(m, 0.0), -models.index(m)))
    selector = _candidates(measured, labels, screen, list(features), seed, (chosen,), few)[chosen]
    if scores:
        selector.figures = {"model_cv_f1": scores}
    return selector


def _model_scores(measured: Measured, labels: np.ndarray, screen: float, features: list, seed: int,
                  models: tuple) -> dict:
    """Each model class's F1 on ``labels``, cross-validated (stratified folds, at most 5);
    empty where there is one class to choose or too few labels of one kind (3) to fold."""
    from sklearn.model_selection import StratifiedKFold
    fewest = int(np.bincount(labels, minlength=2).min())
    if len(models) < 2 or fewest < 3:
        return {}
    selected = {m: np.zeros(len(labels), dtype=bool) for m in models}
    for train, test in StratifiedKFold(min(5, fewest), shuffle=True, random_state=seed).split(labels, labels):
        part = measured.subset(test)
        for m, selector in _candidates(measured.subset(train), labels[train], screen, features, seed,
                                       models).items():
            selected[m][test] = selector.decide(part)[0]
    return {m: float(confusion(s.astype(float), labels, 0.5).f1) for m, s in selected.items()}


def _candidates(measured: Measured, labels: np.ndarray, screen: float, features: list, seed: int,
                models: tuple, few: bool = False) -> dict:
    """The selector of each model class in ``models``, learnt from the labelled frames: the
    logistic regression, and the gates that cut off the negatives it (``hinge_and_gates``)
    or the screen alone (``gates``) lets through.  With ``few`` singles (fewer than
    :data:`GATES_MIN_SINGLES`) the regression's passes are judged out of fold (it rejects
    its own few negatives) and a gate must cut off :data:`FEW_SINGLES_GATE_CUT` of them."""
    logistic, oof = _logistic(measured, labels, screen, features, seed, out_of_fold=few)
    z = logistic.design(measured)[:, :len(features)]
    screened = measured.values["score"] >= screen
    threshold = _oof_threshold(oof, labels, screened) if few else DECISION_THRESHOLD
    out = {}
    for m in models:
        passes = oof if few else logistic.probability(measured)
        passed = screened if m == "gates" else screened & (passes >= DECISION_THRESHOLD)
        gates = [] if m == "hinge" else _gates(z, labels.astype(bool), passed, features,
                                                 FEW_SINGLES_GATE_CUT if few else 1)
        out[m] = replace(logistic, model=m, gates=gates, threshold=threshold)
    return out


def _oof_threshold(oof: np.ndarray, labels: np.ndarray, screened: np.ndarray) -> float:
    """The probability cut of :data:`FEW_SINGLES_THRESHOLDS` whose F1 on the labelled frames,
    judged by their out-of-fold probabilities ``oof``, is highest (the lowest of those equal)."""
    singles = labels.astype(bool)
    f1 = [2.0 * np.sum(screened & (oof >= t) & singles) / (np.sum(screened & (oof >= t)) + singles.sum())
          for t in FEW_SINGLES_THRESHOLDS]
    return float(FEW_SINGLES_THRESHOLDS[int(np.argmax(f1))])


def _gates(z: np.ndarray, labels: np.ndarray, passed: np.ndarray, features: list, least: int = 1) -> list:
    """Gates that keep every labelled single and cut off the labelled negatives ``passed``
    marks: greedily the one-sided cut (at a feature's extreme single) that cuts off most of
    those left, at least ``least`` of them, placed midway between that single and the nearest
    negative it cuts off (the widest margin); its slope makes the gate :data:`GATE_EDGE` at both."""
    singles, negatives = z[labels], z[~labels & passed]
    if len(singles) == 0:
        return []
    low, high = singles.min(axis=0), singles.max(axis=0)
    left = np.ones(len(negatives), dtype=bool)
    gates = []
    while left.any():
        best = None
        for j in range(z.shape[1]):
            for side, edge in ((1, low[j]), (-1, high[j])):
                cut_off = left & (side * (negatives[:, j] - edge) < 0)
                if cut_off.sum() >= max(least, 1):
                    nearest = side * np.max(side * negatives[cut_off, j])
                    rank = (int(cut_off.sum()), abs(edge - nearest))
                    if best is None or rank > best[0]:
                        best = (rank, j, side, edge, nearest, cut_off)
        if best is None:
            break
        _, j, side, edge, nearest, cut_off = best
        half = max(abs(edge - nearest) / 2, GATE_MIN_HALF_GAP)
        slope = math.log(GATE_EDGE / (1 - GATE_EDGE)) / half
        gates.append([features[j], side, float((edge + nearest) / 2), float(slope)])
        left &= ~cut_off
    return gates


def _logistic(measured: Measured, labels: np.ndarray, screen: float, features: list, seed: int,
              out_of_fold: bool = False) -> tuple[Selector, np.ndarray | None]:
    """The L1 logistic regression on z, z² and the hinges (its strength by GridSearchCV), and
    with ``out_of_fold`` its probabilities of the labelled frames each learnt without its fold
    (``cross_val_predict`` at the chosen strength; else None)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
    _, medians, means, scales = standardise(measured, features)
    draft = Selector(features, medians, means, scales, [], 0.0, screen, knots=list(KNOTS))
    design = draft.design(measured)
    folds = StratifiedKFold(_inner_folds(labels), shuffle=True, random_state=seed)
    search = GridSearchCV(LogisticRegression(solver="liblinear", max_iter=5000, random_state=seed, **_l1()),
                          {"C": list(np.logspace(-2, 3, 11))}, cv=folds, scoring="neg_log_loss")
    model = search.fit(design, labels).best_estimator_
    draft.coef = [float(c) for c in model.coef_[0]]
    draft.intercept = float(model.intercept_[0])
    oof = cross_val_predict(model, design, labels, cv=folds, method="predict_proba")[:, 1] if out_of_fold else None
    return draft, oof


def _bootstrap(selected: np.ndarray, labels: np.ndarray, seed: int, draws: int = 1000) -> dict:
    """68 % and 95 % bootstrap intervals of precision, recall and F1 (frames resampled)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = {"precision": [], "recall": [], "f1": []}
    for _ in range(draws):
        pick = rng.integers(0, n, n)
        c = confusion(selected[pick].astype(float), labels[pick], 0.5)
        values["precision"].append(c.precision)
        values["recall"].append(c.recall)
        values["f1"].append(c.f1)
    return {f"{k}_interval_{level}": [float(np.percentile(v, (100 - level) / 2)),
                                      float(np.percentile(v, 100 - (100 - level) / 2))]
            for k, v in values.items() for level in (68, 95)}


def cross_validate(measured: Measured, labels, screen: float, *, features=DEFAULT_FEATURES, folds: int = 5,
                   seed: int = 0) -> tuple[dict, np.ndarray]:
    """Out-of-fold probabilities of the labelled frames and the selection's figures on them
    (stratified ``folds``, each fold's selector learnt on the others; singles below the
    screen count as missed)."""
    from sklearn.model_selection import StratifiedKFold
    labels = np.asarray(labels, dtype=int)
    fewest = int(np.bincount(labels, minlength=2).min())
    if fewest < 3:  # each fold's selector must learn from 2 of each class
        raise InputError(f"cross-validation needs at least 3 labelled frames of each class, got {fewest} of one; "
                         "label more frames ('spidarknet propose' says which)")
    folds = int(min(folds, fewest))
    p = np.zeros(len(labels))
    selected = np.zeros(len(labels), dtype=bool)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(p, labels):
        part = fit_selector(measured.subset(train), labels[train], screen, features=features, seed=seed)
        selected[test], p[test] = part.decide(measured.subset(test))  # each fold at its own cut
    c = confusion(selected.astype(float), labels, 0.5)
    figures = {"folds": folds, "labels": int(len(labels)), "single": int(labels.sum()),
               "precision": c.precision, "recall": c.recall, "f1": c.f1,
               "roc_auc": roc_auc(np.where(measured.values["score"] >= screen, p, 0.0), labels),
               **_bootstrap(selected, labels.astype(bool), seed)}
    return figures, p


def learn_selector(measured: Measured, labels, *, card_screen: float | None, weights: dict,
                   features=DEFAULT_FEATURES, folds: int = 5, seed: int = 0,
                   screen: float | None = None) -> Selector:
    """The selection for the labelled frames, with its cross-validated figures."""
    labels = np.asarray(labels, dtype=int)
    if screen is None:
        screen = screen_for(measured.values["score"], labels, card_screen)
    figures, _ = cross_validate(measured, labels, screen, features=features, folds=folds, seed=seed)
    selector = fit_selector(measured, labels, screen, features=features, seed=seed)
    selector.figures = {**figures, **selector.figures}
    selector.weights = dict(weights)
    return selector
