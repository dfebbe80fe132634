"""The threshold train chooses on its validation frames, and how far it can be trusted."""

import numpy as np
import pytest

from spidarknet.core import metrics
from spidarknet.detection.threshold import threshold_report


def _scores(n, rng, separation):
    labels = rng.random(n) < 0.25
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + separation * (labels - 0.5))))
    return scores, labels


def test_threshold_is_max_f1_and_its_intervals_bracket_it():
    rng = np.random.default_rng(3)
    scores, labels = _scores(600, rng, 3.0)
    report = threshold_report(scores, labels)
    assert report["threshold"] == metrics.best_f_threshold(scores, labels)
    lo, hi = report["threshold_interval"]
    assert lo <= report["threshold"] <= hi
    f_lo, f_hi = report["f1_interval"]
    assert f_lo < report["f1"] < f_hi
    assert report["bootstrap_samples"] == 200


def test_fewer_validation_frames_give_a_wider_f1_interval():
    rng = np.random.default_rng(4)
    widths = []
    for n in (2000, 100):
        scores, labels = _scores(n, rng, 2.0)
        f_lo, f_hi = threshold_report(scores, labels)["f1_interval"]
        widths.append(f_hi - f_lo)
    assert widths[1] > 2 * widths[0]


def test_the_bootstrap_is_seeded_and_can_be_switched_off():
    scores, labels = _scores(300, np.random.default_rng(5), 2.0)
    assert threshold_report(scores, labels) == threshold_report(scores, labels)
    assert "f1_interval" not in threshold_report(scores, labels, bootstrap=0)
    assert "f1_interval" not in threshold_report(scores, np.zeros(300, bool))


def test_the_screening_threshold_sits_below_the_one_keeping_98_percent_of_the_positives():
    """For a size fit after the network: SCREENING_MARGIN times the highest threshold keeping
    98 % of the validation positives, never above the max-F1 one; the card says how many it keeps."""
    from spidarknet.detection.threshold import SCREENING_MARGIN
    scores, labels = _scores(600, np.random.default_rng(6), 1.5)
    report = threshold_report(scores, labels)
    screen = report["screening_threshold"]
    assert 0 < SCREENING_MARGIN < 1 and report["screening_margin"] == SCREENING_MARGIN
    assert screen <= report["threshold"]
    positives = scores[labels]
    at_98 = screen / SCREENING_MARGIN
    assert np.mean(positives >= at_98) >= 0.98 and np.mean(positives > at_98) < 0.98
    assert report["screening_recall"] == pytest.approx(np.mean(positives >= screen))
    assert report["screening_recall"] >= 0.98
    assert "screening_threshold" not in threshold_report(scores, np.zeros(600, bool))
