"""The statistics behind every interval and effect (study.core.stats) and the report's paired
differences and verdicts (study.stages.report.differences), on made-up scores."""

from __future__ import annotations

import numpy as np
import pytest

from study.core.stats import bootstrap_counts, interval, mean_interval, paired_difference
from study.stages.report.differences import verdict


def test_bootstrap_counts_are_seeded_resamples_of_n_items():
    w = bootstrap_counts(50, 200, seed=3)
    assert w.shape == (200, 50) and (w.sum(axis=1) == 50).all() and (w >= 0).all()
    np.testing.assert_array_equal(w, bootstrap_counts(50, 200, seed=3))
    assert not np.array_equal(w, bootstrap_counts(50, 200, seed=4))


def test_mean_interval_is_the_percentile_interval_of_resampled_means():
    correct = (np.random.default_rng(0).random(300) < 0.7).astype(float)
    idx = np.random.default_rng(5).integers(0, 300, size=(400, 300))  # the same draws as bootstrap_counts(seed=5)
    want = interval(correct[idx].mean(axis=1), 0.9)
    assert mean_interval(correct, 400, 0.9, seed=5) == want
    lo, hi = want
    assert lo < correct.mean() < hi and np.isclose(lo, np.percentile(correct[idx].mean(axis=1), 5))


def test_paired_difference_of_the_same_scores_is_exactly_zero():
    a = (np.random.default_rng(1).random((3, 100)) < 0.5).astype(float)
    assert paired_difference(a, a, 500, 0.95) == (0.0, [0.0, 0.0])


def test_paired_difference_sees_a_clear_gain_and_averages_seeds_first():
    rng = np.random.default_rng(2)
    b = (rng.random((3, 400)) < 0.5).astype(float)
    a = np.maximum(b, (rng.random((3, 400)) < 0.3))  # right wherever b was, and more
    gain, (lo, hi) = paired_difference(a, b, 1000, 0.95)
    assert gain == pytest.approx(a.mean() - b.mean()) and 0 < lo < gain < hi
    assert verdict([lo, hi]) == "higher" and verdict([-hi, -lo]) == "lower"
    assert verdict([-0.01, 0.02]) == "no clear difference" and verdict([0.0, 0.02]) == "no clear difference"
