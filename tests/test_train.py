"""Head training on features (study.training.heads.train_head): learns, resumes exactly, stops on NaN."""

import dataclasses

import numpy as np
import pytest

from study.core.config import TrainConfig
from study.core.errors import TrainingDiverged
from study.network.model import head_arrays
from study.training.heads import loss_acc, train_head


def blobs(n, d=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0, 3, (k, d))
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


@pytest.mark.parametrize("head", ["mlp", "seed"])
def test_head_learns_separable_classes(tmp_path, head):
    x, y = blobs(500)
    cfg = TrainConfig(head=head, epochs=15, batch_size=64, learning_rate=3e-3)
    model, history = train_head(x[:400], y[:400], x[400:], y[400:], cfg, seed=0, workdir=tmp_path, log=lambda s: None)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["val_accuracy"] for h in history) > 0.9
    # The returned parameters are those of the epoch with the lowest validation loss.
    best = min(history, key=lambda h: h["val_loss"])
    loss, acc = loss_acc(model, x[400:], y[400:])
    assert np.isclose(loss, best["val_loss"], rtol=1e-5) and np.isclose(acc, best["val_accuracy"])


def test_resumed_training_ends_where_uninterrupted_training_does(tmp_path):
    x, y = blobs(380, seed=1)
    x, y, vx, vy = x[:300], y[:300], x[300:], y[300:]
    cfg = TrainConfig(epochs=6, batch_size=64, patience=100)
    full, h_full = train_head(x, y, vx, vy, cfg, seed=3, workdir=tmp_path / "a", log=lambda s: None)
    # Interrupted after 3 epochs (the checkpoint of epoch 3 is what a kill leaves), then resumed.
    train_head(x, y, vx, vy, dataclasses.replace(cfg, epochs=3), seed=3, workdir=tmp_path / "b", log=lambda s: None)
    resumed, h_res = train_head(x, y, vx, vy, cfg, seed=3, workdir=tmp_path / "b", log=lambda s: None)
    for a, b in zip(h_full, h_res):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    fa = head_arrays(full)
    fb = head_arrays(resumed)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])


def test_nan_loss_stops_with_the_epoch_named(tmp_path):
    x, y = blobs(100)
    x[5, 3] = np.nan
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        train_head(
            x, y, x[:20], y[:20], TrainConfig(epochs=3, batch_size=100), seed=0, workdir=tmp_path, log=lambda s: None
        )
