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


def paired_difference(correct_a_SxN: np.ndarray, correct_b_SxN: np.ndarray, B: int, confidence: float,
                      seed: int = 0) -> tuple[float, list[float]]:
    """Mean accuracy of a minus b (each averaged over its seeds) on the same N test images, and
    its percentile interval over the same bootstrap resamples of the images as the table's."""
    a, b = correct_a_SxN.mean(axis=0), correct_b_SxN.mean(axis=0)
    n = len(a)
    diff_b = bootstrap_counts(n, B, seed) @ (a - b) / n
    return float(a.mean() - b.mean()), interval(diff_b, confidence)
