"""Tests for decodemo.metrics.decision_counts / confusion_counts: the product's rule ``score > threshold``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from decodemo import metrics as M
from decodemo.metrics import DecisionCounts, confusion_counts, decision_counts


def test_hand_example_ties_at_the_threshold_are_normal():
    scores = [0.1, 0.5, 0.5, 0.7, 0.9, 0.2]
    labels = [0, 0, 1, 1, 1, 1]
    d = decision_counts(scores, labels, 0.5)
    assert isinstance(d, DecisionCounts)
    # flagged: 0.7 and 0.9 (both anomalous); the two 0.5 scores are not flagged
    assert (d.tp, d.fp, d.fn, d.tn) == (2, 0, 2, 2)
    assert d.precision == 1.0
    assert d.recall == 0.5
    assert d.f1 == pytest.approx(2 / 3)
    assert d.fpr == 0.0
    assert d.threshold == 0.5
    # just below the tied scores both 0.5 samples are flagged
    d = decision_counts(scores, labels, 0.4999)
    assert (d.tp, d.fp, d.fn, d.tn) == (3, 1, 1, 1)
    assert d.fpr == 0.5


@pytest.mark.parametrize("seed", range(20))
def test_matches_scikit_learn_on_random_problems(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    s = np.round(rng.normal(size=n) + y, 1)  # ties
    t = float(rng.choice(s)) if seed % 2 else float(rng.normal())
    pred = s > t
    d = decision_counts(s, y, t, zero_division=0.0)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (d.tp, d.fp, d.fn, d.tn) == (tp, fp, fn, tn)
    assert d.precision == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert d.recall == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert d.f1 == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert d.fpr == pytest.approx(fp / (fp + tn))
    # the same decisions given directly
    c = confusion_counts(y, pred, zero_division=0.0)
    assert (c.tp, c.fp, c.fn, c.tn, c.precision, c.recall, c.f1, c.fpr) == (
        d.tp, d.fp, d.fn, d.tn, d.precision, d.recall, d.f1, d.fpr)
    assert c.threshold is None


def test_rates_bit_for_bit_as_precision_recall_f1_from_counts():
    """F1 is 2PR / (P + R) of the same floats (how the review dashboard computes it)."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        y = rng.integers(0, 2, 40).astype(bool)
        s = rng.random(40)
        t = float(rng.random())
        d = decision_counts(s, y, t, zero_division=0.0)
        pred = s > t
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        assert (d.precision, d.recall, d.f1) == (p, r, f1)


def test_zero_division():
    # nothing flagged: precision undefined; positives exist, so F1 is 0
    d = decision_counts([0.1, 0.2, 0.3], [0, 1, 1], 1.0)
    assert (d.tp, d.fp, d.fn, d.tn) == (0, 0, 2, 1)
    assert math.isnan(d.precision)
    assert d.recall == 0.0 and d.f1 == 0.0 and d.fpr == 0.0
    d = decision_counts([0.1, 0.2, 0.3], [0, 1, 1], 1.0, zero_division=0.0)
    assert d.precision == 0.0
    # no anomalous sample and none flagged: recall and F1 undefined
    d = decision_counts([0.1, 0.2], [0, 0], 0.5)
    assert math.isnan(d.recall) and math.isnan(d.f1) and d.fpr == 0.0
    d = decision_counts([0.1, 0.2], [0, 0], 0.5, zero_division=1.0)
    assert d.recall == 1.0 and d.f1 == 1.0
    # no normal sample: FPR undefined
    d = decision_counts([0.1, 0.9], [1, 1], 0.5)
    assert math.isnan(d.fpr) and d.precision == 1.0 and d.recall == 0.5


def test_infinite_thresholds_and_scores():
    s = np.array([-np.inf, 0.0, 1.0, np.inf])
    y = np.array([0, 0, 1, 1])
    assert decision_counts(s, y, math.inf).tp + decision_counts(s, y, math.inf).fp == 0
    d = decision_counts(s, y, -math.inf)
    assert (d.tp, d.fp, d.fn, d.tn) == (2, 1, 0, 1)  # -inf is not > -inf


def test_accepts_tensors_bool_and_any_shape():
    scores = torch.tensor([[0.2, 0.8], [0.6, 0.1]])
    labels = torch.tensor([[False, True], [False, False]])
    d = decision_counts(scores, labels, 0.5)
    assert (d.tp, d.fp, d.fn, d.tn) == (1, 1, 0, 2)
    d = decision_counts(scores.to(torch.bfloat16), labels.int(), 0.5)
    assert (d.tp, d.fp, d.fn, d.tn) == (1, 1, 0, 2)


def test_normal_quantile_threshold_gives_its_false_alarm_rate():
    normal = np.random.default_rng(3).normal(size=1000)
    t = M.threshold_at_normal_quantile(normal, q=0.9)
    d = decision_counts(normal, np.zeros(1000, dtype=int), t)
    assert d.fp == 100 and d.fpr == 0.1


@pytest.mark.parametrize(
    "scores, labels, threshold, message",
    [
        ([0.1, 0.2], [0, 2], 0.5, "binary"),
        ([0.1, float("nan")], [0, 1], 0.5, "NaN"),
        ([0.1, 0.2], [0, 1], float("nan"), "threshold"),
        ([0.1, 0.2, 0.3], [0, 1], 0.5, "differ in shape"),
        ([], [], 0.5, "empty"),
    ],
)
def test_refusals(scores, labels, threshold, message):
    with pytest.raises(ValueError, match=message):
        decision_counts(scores, labels, threshold)


def test_confusion_counts_refuses_non_binary_predictions():
    with pytest.raises(ValueError, match="predicted"):
        confusion_counts([0, 1], [0.3, 0.7])
