"""Heads trained together (study.training.group.fit_group): each member is the head that `fit`
trains alone from its seed (same initialisation, data order, views, dropout; early stopping
per member), an interrupted group resumes exactly, and a checkpoint of another group is not
resumed from."""

import dataclasses

import numpy as np
import pytest
from test_train import blobs

from study.core.config import TrainConfig
from study.core.errors import TrainingDiverged
from study.network.model import head_arrays
from study.training.fit import Schedule
from study.training.group import fit_group
from study.training.heads import new_head, train_head


def quiet(s):
    return None


def _group(cfg, seeds, table, y, rows, vx, vy, ckpt, identity="g"):
    heads = [new_head(cfg, table.shape[-1], s) for s in seeds]
    return fit_group(heads, seeds, table, y, rows, vx, vy, Schedule.of(cfg), ckpt, log=quiet, identity=identity)


def _same(a, b, atol):
    a, b = head_arrays(a), head_arrays(b)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=0)


@pytest.mark.parametrize("head", ["mlp", "seed"])
def test_each_member_is_the_head_fit_trains_alone_from_its_seed(tmp_path, head):
    """Views drawn per row, members stopping early at different epochs, and members with rows of
    their own (as a few-shot model's draws): the same histories and, to float rounding, the same heads."""
    x, y = blobs(460, d=24, k=5, seed=2)
    x = (x + np.random.default_rng(3).normal(0, 4, x.shape)).astype(np.float32)  # overlapping: it overfits, and stops
    x, y, vx, vy = x[:400], y[:400], x[400:], y[400:]
    rng = np.random.default_rng(5)
    views = [x + rng.normal(0, 0.5, x.shape).astype(np.float32) for _ in range(2)]
    cfg = TrainConfig(head=head, epochs=25, batch_size=64, patience=1, learning_rate=3e-3)
    seeds = [0, 1, 4]
    rows = [np.arange(0, 300), np.arange(50, 350), np.arange(100, 400)]
    group = _group(cfg, seeds, np.stack([x, *views]), y, rows, vx, vy, tmp_path / "g.npz")
    lengths = set()
    for seed, r, (head_m, hist_m) in zip(seeds, rows, group):
        alone, hist = train_head(x[r], y[r], vx, vy, cfg, seed, tmp_path / f"alone{seed}", [v[r] for v in views], quiet)
        assert len(hist_m) == len(hist)
        lengths.add(len(hist))
        for a, b in zip(hist, hist_m):
            for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                assert a[k] == pytest.approx(b[k], abs=1e-4), (seed, a["epoch"], k)
        _same(alone, head_m, atol=2e-3)  # Adam carries float rounding of the batched products along
    assert len(lengths) > 1 or max(lengths) < cfg.epochs  # early stopping happened per member


def test_an_interrupted_group_ends_where_an_uninterrupted_one_does(tmp_path):
    x, y = blobs(380, seed=1)
    x, y, vx, vy = x[:300], y[:300], x[300:], y[300:]
    cfg = TrainConfig(epochs=6, batch_size=64, patience=100)
    rows = [np.arange(300)] * 2
    full = _group(cfg, [3, 7], x[None], y, rows, vx, vy, tmp_path / "a.npz")
    _group(
        dataclasses.replace(cfg, epochs=3), [3, 7], x[None], y, rows, vx, vy, tmp_path / "b.npz"
    )  # killed after epoch 3
    resumed = _group(cfg, [3, 7], x[None], y, rows, vx, vy, tmp_path / "b.npz")
    for (fa, ha), (fb, hb) in zip(full, resumed):
        assert [{k: v for k, v in e.items() if k != "seconds"} for e in ha] == [
            {k: v for k, v in e.items() if k != "seconds"} for e in hb
        ]
        _same(fa, fb, atol=0)


def test_a_checkpoint_of_another_group_is_not_resumed_from(tmp_path):
    x, y = blobs(200, seed=4)
    cfg = TrainConfig(epochs=2, batch_size=50, patience=100)
    ckpt = tmp_path / "c.npz"
    _group(cfg, [0, 1], x[None], y, [np.arange(200)] * 2, x[:40], y[:40], ckpt, identity="one configuration")
    fresh = _group(
        cfg, [0, 1], x[None], y, [np.arange(200)] * 2, x[:40], y[:40], tmp_path / "d.npz", identity="another"
    )
    other = _group(cfg, [0, 1], x[None], y, [np.arange(200)] * 2, x[:40], y[:40], ckpt, identity="another")
    for (a, ha), (b, hb) in zip(fresh, other):
        assert len(ha) == len(hb) == 2  # trained from the start, not found done after epoch 2
        _same(a, b, atol=0)


def test_nan_loss_stops_the_group_naming_the_member_and_epoch(tmp_path):
    x, y = blobs(100)
    x[5, 3] = np.nan
    with pytest.raises(TrainingDiverged, match="seed 0: training loss is nan at epoch 1"):
        _group(
            TrainConfig(epochs=3, batch_size=100), [0], x[None], y, [np.arange(100)], x[:20], y[:20], tmp_path / "n.npz"
        )
