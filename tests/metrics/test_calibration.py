"""Calibrated thresholds: split-conformal on normal reference scores, its guarantee and interval,
the fused vote's bound, and what the compare service and page make of them."""

from __future__ import annotations

import numpy as np
import pytest

from decodemo.metrics.calibration import conformal_rank, conformal_threshold, describe, provenance, vote_bound


def test_the_rank_is_the_conformal_quantile_and_capped_at_the_sample():
    assert conformal_rank(199, 0.01) == 198  # ceil(200 * 0.99)
    assert conformal_rank(99, 0.01) == 99  # exactly reachable: 1 / (n + 1) = 1 %
    assert conformal_rank(21, 0.01) == 21  # not reachable: the maximum, 1 / 22 guaranteed
    assert conformal_rank(21, 0.2) == 18  # ceil(22 * 0.8)
    with pytest.raises(ValueError):
        conformal_rank(0, 0.01)
    with pytest.raises(ValueError):
        conformal_rank(10, 1.5)


def test_the_guarantee_holds_on_fresh_normals_and_the_interval_covers_the_drawn_rate():
    rng = np.random.default_rng(0)
    n, target, trials = 49, 0.1, 2000
    rates, covered = [], 0
    for _ in range(trials):
        ref, fresh = rng.normal(size=n), rng.normal(size=4000)
        thr, info = conformal_threshold(ref, target)
        rate = float((fresh > thr).mean())
        rates.append(rate)
        covered += info["fpr_interval"][0] <= rate <= info["fpr_interval"][1]
    assert info["rank"] == 45 and info["fpr_bound"] == pytest.approx(5 / 50) and info["achievable"]
    # the mean false-positive rate over calibration draws is the stated bound, (n + 1 - k) / (n + 1)
    assert np.mean(rates) == pytest.approx(info["fpr_bound"], abs=0.006)
    assert 0.86 <= covered / trials <= 0.94  # the 90 % interval covers about 90 % of drawn rates


def test_small_references_say_the_target_cannot_be_met():
    thr, info = conformal_threshold(np.arange(21.0), 0.01)
    assert thr == 20.0 and info["n_above"] == 0 and not info["achievable"]
    assert info["fpr_bound"] == pytest.approx(1 / 22, abs=1e-6) and info["smallest_bound"] == pytest.approx(1 / 22, abs=1e-6)
    lo, hi = info["fpr_interval"]
    assert 0 < lo < 1 / 22 < hi < 0.2
    text = provenance(info, "21 held-out normals")
    assert "1.0%" in text and "4.5%" in text and "cannot be met" in text and "no test data" in text


def test_any_threshold_is_described_by_the_rank_it_reaches():
    s = np.arange(1.0, 11.0)  # 10 normal scores
    assert describe(s, 0.5)["fpr_bound"] == 1.0 and describe(s, 0.5)["n_above"] == 10
    mid = describe(s, 7.5)  # 7 scores at or below: rank 7
    assert mid["rank"] == 7 and mid["n_above"] == 3 and mid["fpr_bound"] == pytest.approx(4 / 11)
    assert describe(s, 99.0)["fpr_bound"] == pytest.approx(1 / 11)


def test_the_vote_bound_is_markovs():
    assert vote_bound([0.045, 0.045, 0.045]) == pytest.approx(0.0675)  # 3 alpha / 2 votes
    assert vote_bound([0.6, 0.6, 0.6]) == pytest.approx(0.9) and vote_bound([0.9, 0.9, 0.9]) == 1.0
    assert vote_bound([0.1]) == pytest.approx(0.1)
