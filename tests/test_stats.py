"""The statistics behind every interval and effect (study.core.stats) and the report's paired
differences, their correction for multiplicity and verdicts (study.stages.report.differences),
on made-up scores."""

from __future__ import annotations

import numpy as np
import pytest

from study.core.stats import bootstrap_counts, interval, mean_interval, paired_difference, paired_draws, simultaneous
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


def _null_family(rng, M: int, n: int, B: int) -> tuple[np.ndarray, np.ndarray]:
    """M paired differences of two models with the same true accuracy (0.6), on n images each."""
    est, draws = [], []
    for _ in range(M):
        a, b = (rng.random((1, n)) < 0.6).astype(float), (rng.random((1, n)) < 0.6).astype(float)
        g, d = paired_draws(a, b, B)
        est.append(g)
        draws.append(d)
    return np.array(est), np.stack(draws)


def test_simultaneous_intervals_cover_a_family_together_where_single_ones_do_not():
    """Twenty differences whose true value is 0, 60 times: some single 95% interval misses 0 in
    most repetitions (1 - 0.95^20 = 0.64), the simultaneous ones in about 5%."""
    rng = np.random.default_rng(0)
    any_alone = any_family = 0
    for _ in range(60):
        est, draws = _null_family(rng, 20, 200, 400)
        c, cis = simultaneous(est, draws, 0.95)
        alone = np.array([interval(d, 0.95) for d in draws])
        any_alone += bool(((alone[:, 0] > 0) | (alone[:, 1] < 0)).any())
        any_family += bool(((cis[:, 0] > 0) | (cis[:, 1] < 0)).any())
        assert 2.5 < c < 3.5  # near Bonferroni's 3.02 for 20 independent ones, far above one interval's 1.96
    assert any_alone / 60 > 0.4 and any_family / 60 < 0.15, (any_alone, any_family)


def test_simultaneous_intervals_of_one_effect_repeated_are_the_single_interval():
    """Differences that move together need no wider interval: ten copies of one effect get the
    cut-off of one, and a difference whose resamples never move gets its own value."""
    rng = np.random.default_rng(1)
    est, draws = _null_family(rng, 1, 300, 1000)
    c1, ci1 = simultaneous(est, draws, 0.95)
    c10, ci10 = simultaneous(np.repeat(est, 10), np.repeat(draws, 10, axis=0), 0.95)
    assert c1 == pytest.approx(c10) and 1.8 < c1 < 2.1 and np.allclose(ci10, ci1[0])
    same = (rng.random((3, 100)) < 0.5).astype(float)
    g, d = paired_draws(same, same, 1000)
    c, cis = simultaneous(np.array([g, est[0]]), np.stack([d, draws[0]]), 0.95)
    assert cis[0].tolist() == [0.0, 0.0] and c == pytest.approx(c1)


def test_the_family_verdicts_use_the_simultaneous_intervals():
    """`correct`: every effect gets its simultaneous interval (wider than its own) and the
    verdict it gives; the count of verdicts that changed is what the two disagree on."""
    from study.stages.report.differences import correct

    rng = np.random.default_rng(2)
    effects = []
    for shift in [0.0] * 18 + [0.08, 0.3]:  # two real gains among null ones
        a = (rng.random((1, 400)) < 0.5 + shift).astype(float)
        b = (rng.random((1, 400)) < 0.5).astype(float)
        g, d = paired_draws(a, b, 1000)
        effects.append({"difference": g, "ci": interval(d, 0.95), "draws": d})
    family = correct(effects, 0.95)
    assert family["family"] == 20 and 2.5 < family["critical"] < 3.5
    for x in effects:
        assert "draws" not in x and x["ci_family"][0] <= x["ci"][0] and x["ci_family"][1] >= x["ci"][1]
        assert x["verdict"] == verdict(x["ci_family"]) and x["verdict_alone"] == verdict(x["ci"])
    assert effects[-1]["verdict"] == "higher"
    assert family["verdicts_changed"] == sum(x["verdict"] != x["verdict_alone"] for x in effects)
