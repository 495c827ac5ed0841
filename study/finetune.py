"""Fine-tuning: the last convolution block (block 5) and the head trained on images.

For a GPU: unlike the frozen-backbone heads of study.train, every step runs the whole
VGG16 forward and block 5's backward, so nothing can be cached. The first four blocks stay
frozen. Images come from the prepared dataset at the model's resolution; batches are fixed
in size and drawn in an order seeded by (seed, epoch), as in study.train.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from study.config import TrainConfig
from study.datasets.images import model_input
from study.model import BLOCK5, Classifier


def trainable(path, value) -> bool:
    """The head's parameters and block 5's; nothing else is updated."""
    if not isinstance(value, nnx.Param):
        return False
    keys = [getattr(p, "key", p) for p in path]
    if keys[0] == "head":
        return True
    return keys[:2] == ["backbone", "convs"] and int(keys[2]) in BLOCK5


def _batches(source, R: int, batch: int, order: np.ndarray):
    for s in range(0, len(order), batch):
        recs = source.__getitems__([int(i) for i in order[s : s + batch]])
        yield np.stack([model_input(r["image"], R, R) for r in recs]), np.array([r["label"] for r in recs])


def finetune(model: Classifier, train_source, val_source, R: int, cfg: TrainConfig, seed: int, log=print) -> list[dict]:
    """Train block 5 and the head on images for cfg.epochs epochs; returns the history."""
    optimizer = nnx.Optimizer(model, optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay), wrt=trainable)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True, argnums=nnx.DiffState(0, trainable))(model)
        optimizer.update(model, grads)
        return loss, (logits.argmax(-1) == y).mean()

    @nnx.jit
    def evaluate(model, x, y, w):
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return (loss * w).sum(), ((logits.argmax(-1) == y) * w).sum()

    n = len(train_source)
    batch = min(cfg.batch_size, n)
    steps = -(-n // batch)
    history = []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        nnx.reseed(model, dropout=seed * 100_003 + epoch)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        order = np.concatenate([order, order[: steps * batch - n]])
        losses, accs = [], []
        for x, y in _batches(train_source, R, batch, order):
            loss, acc = step(model, optimizer, jnp.asarray(x), jnp.asarray(y))
            losses.append(float(loss))
            accs.append(float(acc))
        if not np.isfinite(np.mean(losses)):
            raise FloatingPointError(f"fine-tuning: loss is NaN at epoch {epoch + 1}; stopped")
        model.eval()
        vl = va = 0.0
        m = len(val_source)
        for x, y in _batches(val_source, R, batch, np.arange(m)):
            k = len(y)  # the last batch is padded to the fixed shape, with weight 0
            w = np.concatenate([np.ones(k), np.zeros(batch - k)]).astype(np.float32)
            x = np.concatenate([x, np.zeros((batch - k,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros(batch - k, y.dtype)])
            loss_sum, correct = evaluate(model, jnp.asarray(x), jnp.asarray(y), jnp.asarray(w))
            vl += float(loss_sum)
            va += float(correct)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "train_accuracy": float(np.mean(accs)),
                        "val_loss": vl / m, "val_accuracy": va / m, "seconds": round(time.perf_counter() - t0, 2)})
        log(f"fine-tuning epoch {epoch + 1}: train loss {history[-1]['train_loss']:.3f}, validation accuracy {va / m:.3f}")
    return history
