"""The split guarantees, property-style over many generated frame sets."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from study.core import splits
from study.core.splits import spread_draw

GUARD = 10

frame_sets = st.lists(st.integers(min_value=0, max_value=5000), min_size=0, max_size=400)


def _check_guard(frames, roles, guard=GUARD):
    f = np.asarray(frames)
    r = np.asarray(roles, dtype=object)
    test, val, train = f[r == "test"], f[r == "validation"], f[r == "train"]
    if test.size and (train.size or val.size):
        assert splits.min_frame_distance(test, np.concatenate([train, val])) > guard
    if val.size and train.size:
        assert splits.min_frame_distance(val, train) > guard


@settings(max_examples=300, deadline=None)
@given(frames=frame_sets, guard=st.integers(0, 30), blocks=st.integers(1, 8))
def test_every_image_once_and_guard_band_holds(frames, guard, blocks):
    roles = splits.frame_block_split(frames, guard_frames=guard, max_blocks=blocks, min_images_per_block=20)
    assert len(roles) == len(frames)  # each image gets exactly one role, or is left out
    assert set(roles) <= {"train", "validation", "test", None}
    _check_guard(frames, roles, guard)


@settings(max_examples=200, deadline=None)
@given(frames=frame_sets)
def test_deterministic_and_independent_of_listing_order(frames):
    roles = splits.frame_block_split(frames)
    assert roles == splits.frame_block_split(list(frames))
    order = np.random.default_rng(0).permutation(len(frames))
    shuffled = splits.frame_block_split([frames[i] for i in order])

    # Equal frames may swap roles between themselves; the multiset per frame is what counts.
    def by_frame(fr, ro):
        return sorted(zip(fr, (str(r) for r in ro)))

    assert by_frame(frames, roles) == by_frame([frames[i] for i in order], shuffled)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(60, 3000),
    step=st.integers(1, 15),
    jitter=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_video_like_classes_keep_proportions_and_lose_little(n, step, jitter, seed):
    """Dense recordings like the Kaggle ones: about 70/15/15, at most ~10% left out."""
    rng = np.random.default_rng(seed)
    frames = np.unique(np.arange(n) * step + rng.integers(0, jitter + 1, n))
    # A 10-frame guard cannot keep 70/15/15 in a recording only a few guard bands long.
    assume(frames[-1] - frames[0] >= 300)
    roles = splits.frame_block_split(frames.tolist())
    r = np.asarray(roles, dtype=object)
    kept = (r != None).sum()  # noqa: E711
    for name, frac in (("train", 0.70), ("validation", 0.15), ("test", 0.15)):
        assert (r == name).sum() > 0
        assert abs((r == name).sum() / kept - frac) < 0.08
    # Each of at most 14 block boundaries loses the images within 10 frames on one side.
    assert (r == None).sum() <= 14 * (GUARD // step + 1)  # noqa: E711
    _check_guard(frames, roles)


def test_the_real_subset_spacing_loses_at_most_ten_percent():
    """300 frames spread over 1..3000 like ../shared/data: 5 chunks, ~1 image per boundary."""
    frames = np.sort(np.random.default_rng(1).choice(np.arange(1, 3001), 300, replace=False))
    roles = splits.frame_block_split(frames.tolist())
    assert sum(r is None for r in roles) <= 30


def test_test_blocks_are_spread_over_the_recording():
    frames = list(range(1, 3001))
    roles = splits.frame_block_split(frames)
    test = [f for f, r in zip(frames, roles) if r == "test"]
    # Five contiguous test runs, one near the end of each fifth of the recording.
    runs = np.split(np.array(test), np.where(np.diff(test) > 1)[0] + 1)
    assert len(runs) == 5
    assert all(600 * i < run[0] <= 600 * (i + 1) for i, run in enumerate(runs))


def test_small_class_uses_one_block_and_keeps_every_split():
    roles = splits.frame_block_split([1 + 25 * i for i in range(12)])
    assert roles.count("train") == 8 and roles.count("validation") == 2 and roles.count("test") == 2


def test_duplicate_frames_never_straddle_the_guard():
    frames = [5] * 10 + [100] * 10
    roles = splits.frame_block_split(frames, min_images_per_block=100)
    _check_guard(frames, roles)


def test_zero_test_fraction_carves_validation_only():
    roles = splits.frame_block_split(list(range(0, 2000, 20)), fractions=(0.85, 0.15, 0.0))
    assert "test" not in roles and "validation" in roles and "train" in roles


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="fractions"):
        splits.frame_block_split([1, 2, 3], fractions=(0.5, 0.2, 0.2))


@settings(max_examples=100, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=200, unique=True),
    fraction=st.floats(0.05, 0.5),
)
def test_hash_holdout_is_a_deterministic_order_free_fraction(names, fraction):
    held = splits.hash_holdout(names, fraction)
    assert len(held) == len(names)
    expected = max(round(fraction * len(names)), 1) if len(names) >= 2 else round(fraction * len(names))
    assert sum(held) == expected
    rev = splits.hash_holdout(names[::-1], fraction)
    assert {n for n, h in zip(names, held) if h} == {n for n, h in zip(names[::-1], rev) if h}


@given(st.lists(st.integers(0, 3), min_size=1, max_size=120), st.integers(1, 12), st.integers(0, 5))
def test_spread_draw_takes_k_per_label_one_from_each_stretch_of_the_recording(labels, k, seed):
    labels = np.asarray(labels)
    frames = np.random.default_rng(seed).permutation(len(labels)) * 7  # any order in the archive
    picked = spread_draw(labels, frames, k, seed)
    assert list(picked) == sorted(set(picked.tolist()))
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        mine = [i for i in picked if labels[i] == label]
        assert len(mine) == min(k, len(idx))  # all there is, where a label has fewer than k
        if len(idx) > k:  # one from each of the k runs of frames
            ranks = np.argsort(np.argsort(frames[idx]))
            rank_of = dict(zip(idx.tolist(), ranks.tolist()))
            edges = np.linspace(0, len(idx), k + 1).round().astype(int)
            runs = sorted(int(np.searchsorted(edges, rank_of[i], side="right")) - 1 for i in mine)
            assert runs == list(range(k))
    np.testing.assert_array_equal(picked, spread_draw(labels, frames, k, seed))  # seeded
