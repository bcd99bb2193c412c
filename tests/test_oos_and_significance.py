"""The out-of-scope threshold follows Larson et al.'s rule (best validation accuracy, ties to
the lowest), and the paired test is the exact McNemar test, both against hand computations."""

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest

from pipeline import oos
from pipeline.significance import mcnemar

OOS = 2


def brute_force(labels: np.ndarray, probs: np.ndarray) -> float:
    best, chosen = -1, None
    for t in sorted({0.0, *probs.max(-1)}):
        right = (oos.apply(probs, t, OOS) == labels).sum()
        if right > best:
            best, chosen = right, t
    return chosen


def test_threshold_by_hand():
    # Confidences 0.9 (right), 0.5 (an oos query taken for label 0), 0.6 (right), 0.4 (oos
    # query): every query below 0.6 turning oos gets all four right; 0.5 gets three.
    probs = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.4, 0.3, 0.3]])
    labels = np.array([0, OOS, 1, OOS])
    assert oos.choose(labels, probs, OOS) == 0.6
    assert oos.apply(probs, 0.6, OOS).tolist() == [0, OOS, 1, OOS]


def test_no_threshold_when_none_helps():
    probs = np.array([[0.5, 0.3, 0.2], [0.3, 0.6, 0.1]])
    assert oos.choose(np.array([0, 1]), probs, OOS) == 0.0
    assert oos.apply(probs, 0.0, OOS).tolist() == [0, 1]


@pytest.mark.parametrize("seed", range(20))
def test_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    # Rounded so that confidences tie.
    probs = rng.dirichlet(np.ones(3) * 0.7, size=40).round(1)
    probs = probs / probs.sum(-1, keepdims=True)
    labels = rng.integers(0, 3, size=40)
    assert oos.choose(labels, probs, OOS) == brute_force(labels, probs)


def test_mcnemar_by_hand():
    labels = np.zeros(10, dtype=int)
    # a right on 0-7, b right on 0-3 and 8: a alone on 4-7 (4 queries), b alone on 8 (1).
    a = np.array([0] * 8 + [1, 1])
    b = np.array([0] * 4 + [1] * 4 + [0, 1])
    out = mcnemar(labels, {"student": a, "baseline": b})
    # Two-sided exact test of 4 vs 1: 2 * P(X <= 1), X ~ Bin(5, 1/2) = 2 * 6/32.
    assert out == {"accuracy_gain": pytest.approx(0.3), "only_student_right": 4,
                   "only_baseline_right": 1, "mcnemar_p": pytest.approx(12 / 32)}


def test_mcnemar_of_equal_predictions_is_one():
    labels = np.array([0, 1, 2])
    out = mcnemar(labels, {"a": labels, "b": labels})
    assert (out["only_a_right"], out["only_b_right"], out["mcnemar_p"]) == (0, 0, 1.0)


@pytest.mark.parametrize("only_a,only_b", list(itertools.product([0, 3, 30], [1, 7])))
def test_mcnemar_is_the_binomial_test(only_a, only_b):
    n = only_a + only_b + 5
    labels = np.zeros(n, dtype=int)
    a, b = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    a[only_a:only_a + only_b] = 1
    b[:only_a] = 1
    out = mcnemar(labels, {"a": a, "b": b})
    assert out["mcnemar_p"] == pytest.approx(binomtest(only_a, only_a + only_b).pvalue)
