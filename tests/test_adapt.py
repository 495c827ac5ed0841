"""Adaptation without target labels (study.training.adapt, `<source>+<method>(<target>)` models):
the transforms do what they say, and no target label reaches a trained head."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_results, write_features
from study.core.config import SMOKE
from study.core.names import parse
from study.core.plan import Unit
from study.network.model import predict_logits
from study.training import adapt
from study.training.heads import new_head


def test_a_standardisation_folded_into_the_head_is_the_same_function():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.5, (300, 512)).astype(np.float32)
    x[:, 7] = 0.0  # a feature that never varies
    s = adapt.Standardise.of(x)
    z = s(x)
    np.testing.assert_allclose(z[:, :7].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z[:, 8:].std(0), 1, atol=1e-3)
    assert np.all(z[:, 7] == 0)
    head = new_head(SMOKE.train, 512, 0)
    before = predict_logits(head, z, 29)
    adapt.fold(head, s)
    np.testing.assert_allclose(predict_logits(head, x, 29), before, rtol=1e-4, atol=1e-4)


def test_coral_gives_the_source_the_targets_mean_and_covariance():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(4000, 6)) @ rng.normal(size=(6, 6)) + 3
    tgt = rng.normal(size=(3000, 6)) @ rng.normal(size=(6, 6)) - 1
    moved = adapt.apply(src, adapt.coral(src, tgt, shrink=0.0))
    np.testing.assert_allclose(moved.mean(0), tgt.mean(0), atol=1e-3)
    np.testing.assert_allclose(np.cov(moved, rowvar=False), np.cov(tgt, rowvar=False), rtol=1e-3, atol=1e-3)


def test_pseudo_labels_keep_confident_rows_among_the_shared_labels():
    logits = np.full((3, 29), -10.0)
    logits[0, 4] = 5.0  # sure of label 4
    logits[1, [4, 5]] = 5.0  # torn between 4 and 5
    logits[2, 20] = 9.0  # sure of a label outside the shared ones; among those, unsure
    keep, labels = adapt.pseudo_labels(logits, [4, 5, 6], confidence=0.9)
    assert keep.tolist() == [0] and labels.tolist() == [4]


def test_adapted_models_are_named_scored_on_their_target_and_not_scored_on_photos():
    m = parse("asl_alphabet+coral(asl_photos)")
    assert (m.kind, m.adapt, m.target, m.datasets) == ("adapted", "coral", "asl_photos", ("asl_alphabet",))
    assert str(m) == "asl_alphabet+coral(asl_photos)"
    with pytest.raises(ValueError):
        parse("asl_alphabet+magic(asl_photos)/x")


SPLITS = {"train": ["A", "B", "C"], "validation": ["A", "B", "C"], "test": ["A", "B", "C"]}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["std", "coral", "self"])
def test_no_target_label_reaches_an_adapted_head(tmp_path, method):
    """The same heads whatever the target's training labels say (they are scrambled here)."""
    import dataclasses

    from study.stages import train

    preset = dataclasses.replace(
        SMOKE,
        few_shot=(),
        ablation=(),
        multi_source=False,
        augment=dataclasses.replace(SMOKE.augment, views=0),
        block5=dataclasses.replace(SMOKE.block5, resolutions=()),
        adapt=dataclasses.replace(SMOKE.adapt, methods=(method,)),
        hands=dataclasses.replace(SMOKE.hands, crops=False, landmarks=False),
    )
    heads = []
    for scramble in (False, True):
        ctx = tiny_results(tmp_path / str(scramble), preset, {"asl_alphabet": SPLITS, "asl_photos": SPLITS})
        rng = np.random.default_rng(0)
        for d, shift in (("asl_alphabet", 0.0), ("asl_photos", 2.0)):
            for split in SPLITS:
                y = np.repeat([0, 1, 2], 10)
                x = rng.gamma(2.0, 1.0, (30, 512)).astype(np.float32) + shift + y[:, None] * 0.5
                if scramble and d == "asl_photos" and split == "train":
                    y = np.full(30, 28)
                write_features(ctx, Unit(d, split, 32, 32), x, y)
        train.run_stage(ctx)
        from study.core import store

        heads.append(store.head_arrays(ctx, f"asl_alphabet+{method}(asl_photos)", 32, 0))
    for k in heads[0]:
        np.testing.assert_array_equal(heads[0][k], heads[1][k])
