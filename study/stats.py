"""Bootstrap resamples shared by the scoring (study.evaluate) and the report's paired gains.
NumPy only: the report, which never imports jax, uses it too."""

from __future__ import annotations

import numpy as np


def bootstrap_counts(n: int, B: int, seed: int) -> np.ndarray:
    """B x n resample counts (how often each image is drawn), from a seeded generator."""
    idx = np.random.default_rng(seed).integers(0, n, size=(B, n))
    counts = np.zeros((B, n), np.float64)
    np.add.at(counts, (np.arange(B)[:, None], idx), 1)
    return counts


def paired_difference(correct_a_SxN: np.ndarray, correct_b_SxN: np.ndarray, B: int, confidence: float,
                      seed: int = 0) -> tuple[float, list[float]]:
    """Mean accuracy of a minus b (each averaged over its seeds) on the same N test images, and
    its percentile interval over the same bootstrap resamples of the images as the table's."""
    a, b = correct_a_SxN.mean(axis=0), correct_b_SxN.mean(axis=0)
    n = len(a)
    diff_b = bootstrap_counts(n, B, seed) @ (a - b) / n
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    return float(a.mean() - b.mean()), [float(np.percentile(diff_b, lo)), float(np.percentile(diff_b, hi))]
