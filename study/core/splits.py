"""Leak-free splits: contiguous frame blocks with a guard band, and hash hold-outs.

In a video-frame dataset, images a few frames apart are near-copies: a random split puts
near-copies of test images into training (docs/method.md). `frame_block_split` cuts each
class by rank of frame number into chunks spread over the whole recording, each chunk into
contiguous train | validation | test runs, and then leaves out every train or validation image
within `guard_frames` frames of a test image and every train image within `guard_frames` of a
validation image. `random_deal` is the leakage ablation's opposite: the same images dealt at
random, frames ignored. Everything here is pure: lists in, lists out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

TRAIN, VALIDATION, TEST = "train", "validation", "test"
# Marks an image that the guard band leaves out of every split.
LEFT_OUT = None
# Every validation or test run spans at least this many guard bands, so that the guard band
# cannot swallow a whole run: in a dense recording (one image per frame) fewer, longer chunks.
MIN_RUN_GUARDS = 4


def frame_block_split(
    frames: Sequence[int],
    *,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    max_blocks: int = 5,
    min_images_per_block: int = 40,
    guard_frames: int = 10,
) -> list[str | None]:
    """Split one class's images by their frame numbers; one entry per input, None if left out.

    The images are ranked by frame number and cut into k chunks of equal count, k the largest
    number up to `max_blocks` that leaves every chunk `min_images_per_block` images and every
    validation or test run at least MIN_RUN_GUARDS guard bands of frames. Within each chunk the
    first `fractions[0]` are train, the next `fractions[1]` validation, the rest test.
    Then the guard band: no train or validation
    image keeps a frame distance <= guard_frames to a test image, and no train image to a
    validation image. Deterministic: the same frames always give the same split.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0 or fractions[0] <= 0:
        raise ValueError(f"fractions must be >= 0, with train > 0, and sum to 1; got {fractions}")
    n = len(frames)
    if n == 0:
        return []
    f = np.asarray(frames, dtype=np.int64)
    span = int(f.max() - f.min()) + 1
    smallest = min(x for x in fractions if x > 0)
    k_frames = int(smallest * span / (MIN_RUN_GUARDS * guard_frames)) if guard_frames else n
    k = max(1, min(max_blocks, n // min_images_per_block, k_frames))
    # Position of each rank inside its chunk, in [0, 1): ranks are spread evenly so that the
    # proportions hold in every chunk however n divides.
    pos = (np.arange(n) + 0.5) / n * k
    pos -= np.floor(pos)
    by_rank = np.where(pos < fractions[0], TRAIN, np.where(pos < fractions[0] + fractions[1], VALIDATION, TEST))
    roles = np.empty(n, dtype=object)
    roles[np.argsort(f, kind="stable")] = by_rank

    near_test = _distance_to_nearest(f, f[roles == TEST]) <= guard_frames
    roles[(roles != TEST) & near_test] = LEFT_OUT
    near_validation = _distance_to_nearest(f, f[roles == VALIDATION]) <= guard_frames
    roles[(roles == TRAIN) & near_validation] = LEFT_OUT
    return list(roles)


def _distance_to_nearest(frames: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """|frame - nearest target| for every frame; +inf where there are no targets."""
    if targets.size == 0:
        return np.full(frames.shape, np.inf)
    t = np.sort(targets)
    i = np.searchsorted(t, frames)
    left = np.abs(frames - t[np.clip(i - 1, 0, t.size - 1)])
    right = np.abs(t[np.clip(i, 0, t.size - 1)] - frames)
    return np.minimum(left, right).astype(float)


def min_frame_distance(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Smallest |x - y| over x in a, y in b; None if either is empty."""
    a_, b_ = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a_.size == 0 or b_.size == 0:
        return None
    return int(_distance_to_nearest(a_, b_).min())


def hash_holdout(names: Sequence[str], fraction: float, *, salt: str = "validation") -> list[bool]:
    """Deterministic hold-out of round(fraction * n) names (at least 1 when n >= 2).

    Names are ranked by sha256(salt + name): the result depends on the names alone, not on the
    order the archive lists them in. For datasets whose images are independent renders (Lexset).
    """
    n = len(names)
    k = round(fraction * n)
    if n >= 2:
        k = max(k, 1)
    rank = sorted(range(n), key=lambda i: hashlib.sha256((salt + names[i]).encode()).hexdigest())
    held = set(rank[:k])
    return [i in held for i in range(n)]


def random_deal(sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """The leakage ablation's split: sum(sizes) pooled images (indices in the order of the
    given splits) dealt at random, frame numbers ignored, into splits of the same sizes."""
    perm = np.random.default_rng(seed).permutation(int(sum(sizes)))
    ends = np.cumsum(sizes)
    return [perm[e - n : e] for n, e in zip(sizes, ends)]


def spread_draw(labels: Sequence[int], frames: Sequence[int], k: int, seed: int) -> np.ndarray:
    """Indices of k images per label, spread over the recording (few-shot target data).

    Each label's images are ranked by frame number (by position where there are no frame
    numbers, -1) and cut into k runs of equal count; one image is drawn at random from each
    run, so the k images never come from one stretch of video. A label with k or fewer images
    gives all it has. Sorted indices into `labels`.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    labels_, frames_ = np.asarray(labels), np.asarray(frames)
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for label in np.unique(labels_):
        idx = np.flatnonzero(labels_ == label)
        ranked = idx[np.argsort(frames_[idx], kind="stable")]
        if len(ranked) <= k:
            out += ranked.tolist()
            continue
        edges = np.linspace(0, len(ranked), k + 1).round().astype(int)
        out += [int(ranked[rng.integers(a, b)]) for a, b in zip(edges[:-1], edges[1:])]
    return np.sort(np.asarray(out, dtype=np.int64))


# Seed of the per-label balancing of two datasets' images (the separability and trivial-cue checks).
BALANCE_SEED = 0


def balanced(
    y_a: np.ndarray, y_b: np.ndarray, classes: list[int], seed: int = BALANCE_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into a and b with, for each label, as many images from each side."""
    rng = np.random.default_rng(seed)
    ia, ib = [], []
    for c in classes:
        a, b = np.flatnonzero(y_a == c), np.flatnonzero(y_b == c)
        m = min(len(a), len(b))
        ia.append(rng.choice(a, m, replace=False))
        ib.append(rng.choice(b, m, replace=False))
    return np.sort(np.concatenate(ia)).astype(int), np.sort(np.concatenate(ib)).astype(int)
