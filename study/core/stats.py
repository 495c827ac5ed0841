"""Bootstrap resamples and percentile intervals: the scoring (study.stages.evaluate), the domain
separability (study.diagnostics.separability) and the report's paired differences share them.
NumPy only: the report, which never imports jax, uses it too."""

from __future__ import annotations

import numpy as np


def bootstrap_counts(n: int, B: int, seed: int) -> np.ndarray:
    """B x n resample counts (how often each image is drawn), from a seeded generator."""
    idx = np.random.default_rng(seed).integers(0, n, size=(B, n))
    counts = np.zeros((B, n), np.float64)
    np.add.at(counts, (np.arange(B)[:, None], idx), 1)
    return counts


def interval(samples_B: np.ndarray, confidence: float) -> list[float]:
    """The percentile interval of `confidence` (0.95: the 2.5th and 97.5th percentiles)."""
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    return [float(np.percentile(samples_B, lo)), float(np.percentile(samples_B, hi))]


def mean_interval(values_N: np.ndarray, B: int, confidence: float, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of `values_N` over B resamples of its items."""
    return interval(bootstrap_counts(len(values_N), B, seed) @ values_N / len(values_N), confidence)


def paired_draws(
    correct_a_SxN: np.ndarray, correct_b_SxN: np.ndarray, B: int, seed: int = 0
) -> tuple[float, np.ndarray]:
    """Mean accuracy of a minus b (each averaged over its seeds) on the same N test images, and
    its B values over the same bootstrap resamples of the images as the table's."""
    a, b = correct_a_SxN.mean(axis=0), correct_b_SxN.mean(axis=0)
    return float(a.mean() - b.mean()), bootstrap_counts(len(a), B, seed) @ (a - b) / len(a)


def paired_difference(
    correct_a_SxN: np.ndarray, correct_b_SxN: np.ndarray, B: int, confidence: float, seed: int = 0
) -> tuple[float, list[float]]:
    """`paired_draws`' difference and its percentile interval."""
    gain, draws = paired_draws(correct_a_SxN, correct_b_SxN, B, seed)
    return gain, interval(draws, confidence)


def simultaneous(estimates_M: np.ndarray, draws_MxB: np.ndarray, confidence: float) -> tuple[float, np.ndarray]:
    """Simultaneous intervals for a family of M differences (docs/method.md, multiplicity):
    each estimate +- c times its bootstrap standard error, c the `confidence` quantile over the
    B resamples of the largest standardised deviation max_i |draw_ib - estimate_i| / se_i
    (the max-|t| bootstrap). All M cover their true values at once with probability
    `confidence`; c is near Bonferroni's normal quantile for independent differences and
    lower the more they move together (they share test images and models), down to the
    single interval's for differences that are one.
    A difference whose resamples never move (se 0) gets the interval [estimate, estimate]
    and is left out of the maximum. Returns c and the M x 2 intervals."""
    est = np.asarray(estimates_M, np.float64)
    draws = np.asarray(draws_MxB, np.float64)
    se = draws.std(axis=1)
    moving = se > 0
    if not moving.any():
        return 0.0, np.stack([est, est], 1)
    t = np.abs(draws[moving] - est[moving, None]) / se[moving, None]
    c = float(np.quantile(t.max(axis=0), confidence))
    return c, np.stack([est - c * se, est + c * se], 1)
