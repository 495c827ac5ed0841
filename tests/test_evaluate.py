"""Scoring: restricted labels, vectorised macro-F1 and bootstrap intervals."""

import numpy as np
from sklearn.metrics import f1_score

from study.stages import evaluate


def test_restricted_scoring_drops_foreign_labels_and_masks_their_logits():
    # Three images; classes 0..4 exist in the model, only {1, 3} are shared with the eval set.
    logits = np.array(
        [
            [0, 5, 0, 1, 9],  # best overall is 4 (not shared): restricted prediction is 1
            [0, 0, 0, 2, 0],  # predicts 3
            [9, 0, 0, 0, 0],  # label 0 is not shared: the image is not scored
        ],
        dtype=np.float32,
    )
    labels = np.array([1, 1, 0])
    y_true, y_pred = evaluate.restricted_predictions(logits, labels, [3, 1])
    np.testing.assert_array_equal(y_true, [1, 1])
    np.testing.assert_array_equal(y_pred, [1, 3])


def test_vectorised_macro_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 8, 300))
    labels = np.unique(y_true)
    ours = evaluate.macro_f1_weighted(y_true, y_pred, np.ones((1, 300)), labels)[0]
    assert np.isclose(ours, f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    w = evaluate.bootstrap_counts(300, 5, seed=1)
    for b in range(5):
        idx = np.repeat(np.arange(300), w[b].astype(int))
        want = f1_score(y_true[idx], y_pred[idx], labels=labels, average="macro", zero_division=0)
        assert np.isclose(evaluate.macro_f1_weighted(y_true, y_pred, w[b : b + 1], labels)[0], want)


def test_score_has_intervals_report_and_confusion():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 29, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 29, 500))
    s = evaluate.score(y_true, y_pred, B=500, confidence=0.95)
    assert s["n"] == 500
    assert s["accuracy_ci"][0] < s["accuracy"] < s["accuracy_ci"][1]
    assert s["macro_f1_ci"][0] < s["macro_f1"] < s["macro_f1_ci"][1]
    assert 0.03 < s["accuracy_ci"][1] - s["accuracy_ci"][0] < 0.12  # about 2 x 1.96 x sqrt(p(1-p)/n)
    assert np.isclose(s["report"]["accuracy"], s["accuracy"])
    assert np.array(s["confusion"]["matrix"]).sum() == 500
    assert "precision" in s["report_text"]


def test_paired_difference_uses_the_tables_resamples_and_sees_a_real_gain():
    from study.core.stats import paired_difference

    rng = np.random.default_rng(5)
    base = (rng.random((3, 400)) < 0.5).astype(float)
    better = np.maximum(base, (rng.random((3, 400)) < 0.3))  # right wherever base is, and more
    gain, (lo, hi) = paired_difference(better, base, B=500, confidence=0.95)
    assert gain == better.mean() - base.mean() and 0 < lo < gain < hi
    same, (lo, hi) = paired_difference(base, base, B=500, confidence=0.95)
    assert same == 0 and lo == hi == 0
    noise = (rng.random((3, 400)) < 0.5).astype(float)
    _, (lo, hi) = paired_difference(noise, base, B=500, confidence=0.95)
    assert lo < 0 < hi  # two coin-flip models: no clear difference
