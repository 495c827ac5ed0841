"""A head on cached features: how one is made from its seed, scored on validation rows, and
trained alone by study.training.fit (study.stages.train trains a model's seeds together with
study.training.group; bench times both)."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from study.core.config import TrainConfig
from study.core.labels import CANONICAL
from study.network.model import make_head, predict_logits
from study.training.fit import Schedule, fit, fixed_batches


def new_head(cfg: TrainConfig, in_dim: int, seed: int) -> nnx.Module:
    """A new head of the configured kind over all canonical labels, seeded by `seed`."""
    return make_head(cfg.head, in_dim, len(CANONICAL), rngs=nnx.Rngs(params=seed, dropout=seed))


def loss_acc(model, x, labels) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on features `x` with `labels`."""
    logits = predict_logits(model, x, len(CANONICAL))
    loss = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels))
    return float(loss.mean()), float((logits.argmax(-1) == labels).mean())


def train_head(
    train_x,
    train_y,
    val_x,
    val_y,
    cfg: TrainConfig,
    seed: int,
    workdir: Path,
    views: list[np.ndarray] = (),
    log=print,
    name: str = "",
) -> tuple[nnx.Module, list[dict]]:
    """Train one head on features (study.training.fit); with `views`, each training row is shown each
    epoch as itself or one of its views (augmented or flipped features, row for row).
    Resumes from `workdir/checkpoint.npz` if a run was interrupted."""
    model = new_head(cfg, train_x.shape[1], seed)
    return fit(
        model,
        len(train_y),
        fixed_batches(train_x, train_y, list(views), cfg.batch_size),
        lambda m: loss_acc(m, val_x, val_y),
        Schedule.of(cfg),
        seed,
        workdir,
        log=log,
        name=name,
    )
