"""Domain separability (study.diagnostics.separability) on made-up features: two domains apart
are told apart, one domain split in two is not, and both sides are balanced per label."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_results, write_features
from study.core import store
from study.core.config import CPU
from study.core.plan import Unit
from study.core.splits import balanced
from study.stages import separability

LABELS = ["A", "B", "C"]
SPLITS = {"train": LABELS, "validation": LABELS, "test": LABELS}


def run(tmp_path, shift: float) -> list[dict]:
    """Separability of asl_alphabet and asl_photos whose features differ by `shift` in every dimension."""
    preset = CPU.restricted(None, [64])
    ctx = tiny_results(tmp_path / "out", preset, {"asl_alphabet": SPLITS, "asl_photos": SPLITS})
    rng = np.random.default_rng(0)
    for i, d in enumerate(("asl_alphabet", "asl_photos")):
        for split, rs in (("train", [64]), ("test", [64, 32, 16])):
            for r in rs:
                y = np.repeat(np.arange(3), [40, 30, 20] if i else [20, 30, 40])  # other label counts per side
                x = rng.normal(0, 1, (len(y), 8)) + y[:, None] + i * shift
                write_features(ctx, Unit(d, split, 64, r), x, y)
    return separability.run_stage(ctx), ctx


def test_domains_apart_are_told_apart_and_one_domain_is_not(tmp_path):
    rows, ctx = run(tmp_path / "apart", shift=3.0)
    assert [(r["R"], r["r"]) for r in rows] == [(64, 64), (64, 32), (64, 16)]
    assert all(r["accuracy"] > 0.95 and r["n_test"] == 2 * 70 for r in rows)  # min(20, 40) + 30 + min(40, 20) a side
    assert store.read_separability(ctx.out_dir / "separability.csv")[0]["accuracy"] == round(rows[0]["accuracy"], 4)
    rows, _ = run(tmp_path / "same", shift=0.0)
    assert all(r["accuracy_ci_low"] < 0.5 + 0.15 and r["accuracy"] < 0.7 for r in rows)


def test_both_sides_are_balanced_per_label():
    ya, yb = np.repeat([0, 1, 2], [5, 9, 2]), np.repeat([0, 1, 2, 3], [7, 3, 4, 9])
    ia, ib = balanced(ya, yb, [0, 1, 2], seed=0)
    assert [int((ya[ia] == c).sum()) for c in range(3)] == [int((yb[ib] == c).sum()) for c in range(3)] == [5, 3, 2]
    assert (np.diff(ia) > 0).all() and np.array_equal((ia, ib), balanced(ya, yb, [0, 1, 2], seed=0))


def test_nothing_in_the_image_level_mode(tmp_path):
    import dataclasses

    image_level = dataclasses.replace(CPU, train=dataclasses.replace(CPU.train, finetune=True))
    ctx = tiny_results(tmp_path / "out", image_level, {"asl_alphabet": SPLITS, "asl_photos": SPLITS})
    assert separability.run_stage(ctx) == [] and not (ctx.out_dir / "separability.csv").exists()


def test_the_ring_is_the_outer_frame_of_pixels_and_nothing_else():
    from study.diagnostics.cues import ring

    images = np.zeros((2, 6, 6, 3), np.uint8)
    images[0, 0, :, 2] = 255  # the top row blue
    images[1, 1:-1, 1:-1] = 255  # only the inside bright
    r = ring(images)
    assert r.shape == (2, (4 * 6 - 4) * 3)
    assert r[0].reshape(-1, 3)[:, 2].sum() == 6 and r[0].sum() == 6
    assert r[1].sum() == 0


@pytest.mark.slow
def test_the_smoke_run_checks_the_trivial_cues(smoke):
    """evaluate writes cues.csv: the frame alone, the features without a border and those of the
    hand crops, for every separability pair; the border's features are units of their own at
    the lowest R."""
    from smoke import context, layout
    from study.core import store

    ctx = context(smoke)
    rows = store.read_cues(layout(smoke)["out"] / "cues.csv")
    assert {(r["dataset_a"], r["dataset_b"], r["check"]) for r in rows} == {
        (a, b, c) for a, b, _ in ctx.plan.separability_pairs for c in ("frame", "no 2-pixel border", "hand crop")
    }
    for r in rows:
        assert 0 <= r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"] <= 1 and r["n_test"] > 0
        assert (r["R"] is None) == (r["check"] == "frame")
    assert {u.trim for u in ctx.plan.feature_units} == {0, 2}
    assert "outer one-pixel frame" in (layout(smoke)["paper"] / "paper.md").read_text()
