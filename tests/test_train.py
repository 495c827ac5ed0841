"""Head training: learns, resumes exactly, stops on NaN."""

import dataclasses

import numpy as np
import pytest

from study import train
from study.model import head_arrays
from study.config import TrainConfig


def blobs(n, d=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0, 3, (k, d))
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


@pytest.mark.parametrize("head", ["mlp", "seed"])
def test_head_learns_separable_classes(tmp_path, head):
    x, y = blobs(500)
    cfg = TrainConfig(head=head, epochs=15, batch_size=64, learning_rate=3e-3)
    model, history = train.train_head(x[:400], y[:400], x[400:], y[400:], cfg, seed=0, workdir=tmp_path, log=lambda s: None)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["val_accuracy"] for h in history) > 0.9
    # The returned parameters are those of the epoch with the lowest validation loss.
    best = min(history, key=lambda h: h["val_loss"])
    loss, acc = train._loss_acc(model, x[400:], y[400:])
    assert np.isclose(loss, best["val_loss"], rtol=1e-5) and np.isclose(acc, best["val_accuracy"])


def test_resumed_training_ends_where_uninterrupted_training_does(tmp_path):
    x, y = blobs(380, seed=1)
    x, y, vx, vy = x[:300], y[:300], x[300:], y[300:]
    cfg = TrainConfig(epochs=6, batch_size=64, patience=100)
    full, h_full = train.train_head(x, y, vx, vy, cfg, seed=3, workdir=tmp_path / "a", log=lambda s: None)
    # Interrupted after 3 epochs (the checkpoint of epoch 3 is what a kill leaves), then resumed.
    train.train_head(x, y, vx, vy, dataclasses.replace(cfg, epochs=3), seed=3, workdir=tmp_path / "b", log=lambda s: None)
    resumed, h_res = train.train_head(x, y, vx, vy, cfg, seed=3, workdir=tmp_path / "b", log=lambda s: None)
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
    with pytest.raises(FloatingPointError, match="epoch 1"):
        train.train_head(x, y, x[:20], y[:20], TrainConfig(epochs=3, batch_size=100), seed=0, workdir=tmp_path, log=lambda s: None)


def test_block5_and_head_resume_exactly_and_only_trainable_parameters_move(tmp_path):
    """study.fit with another model and parameter filter: block 5 and a head on maps."""
    from flax import nnx

    from study.fit import Schedule, fit, fixed_batches
    from study.model import Block5, Classifier, make_head

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    maps = (rng.normal(0, 1, (96, 2, 2, 8)) + y[:, None, None, None]).astype(np.float32)

    def model():
        rngs = nnx.Rngs(params=0, dropout=0)  # dropout reseeded per epoch, as study.train's heads
        return Classifier(Block5(8, 8, rngs=rngs), make_head("mlp", 8, 3, rngs=rngs))

    def run(workdir, epochs):
        m = model()
        return fit(m, 64, fixed_batches(maps[:64], y[:64], batch=16), lambda m: train._loss_acc(m, maps[64:], y[64:]),
                   Schedule(epochs, 16, 1e-2, 1e-4, 100), 1, workdir, log=lambda s: None)

    full, h_full = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed, h_res = run(tmp_path / "b", 4)
    assert [h["val_loss"] for h in h_full] == [h["val_loss"] for h in h_res]
    for a, b in zip(nnx.state(full, nnx.Param).flat_state(), nnx.state(resumed, nnx.Param).flat_state()):
        np.testing.assert_array_equal(a[1][...], b[1][...])
    assert not np.array_equal(np.asarray(full.backbone.convs[0].kernel[...]), np.asarray(model().backbone.convs[0].kernel[...]))


def test_views_show_each_row_as_itself_or_one_of_its_views():
    from study.fit import fixed_batches

    x = np.zeros((10, 2), np.float32)
    views = [np.full((10, 2), 1, np.float32), np.full((10, 2), 2, np.float32)]
    batches = fixed_batches(x, np.arange(10), views, batch=5)
    shown = np.concatenate([b for b, _ in batches(np.arange(10), np.random.default_rng(0))])
    assert set(np.unique(shown)) <= {0, 1, 2} and len(np.unique(shown)) > 1
    assert (shown[:, 0] == shown[:, 1]).all()  # whole rows, never mixed
    again = np.concatenate([b for b, _ in batches(np.arange(10), np.random.default_rng(0))])
    np.testing.assert_array_equal(shown, again)  # drawn from the epoch's generator
