"""The image-level fine-tuning mode: block 5 and the head trained on images, for a GPU.

Unlike `<dataset>/ft5` models (study.stages.train.train_block5), which train block 5 on cached
block-4 maps, every step here runs the whole VGG16 forward and block 5's backward, so a
model could see a new random view of an image at every step; nothing is cached. The first
four blocks stay frozen. Images come from the prepared dataset at the model's resolution.
The loop (seeded epochs, early stopping, checkpoints every epoch, resume, best epoch kept)
is study.training.fit's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optax
from flax import nnx

from study.core.config import TrainConfig
from study.datasets.images import model_input
from study.network.model import BLOCK5, Classifier
from study.training.fit import Schedule, fit


def trainable(path, value) -> bool:
    """The head's parameters and block 5's; nothing else is updated."""
    if not isinstance(value, nnx.Param):
        return False
    keys = [getattr(p, "key", p) for p in path]
    if keys[0] == "head":
        return True
    return keys[:2] == ["backbone", "convs"] and int(keys[2]) in BLOCK5


def changed(path, value) -> bool:
    """What training changes, so what is checkpointed: the trainable parameters and batch statistics."""
    return trainable(path, value) or isinstance(value, nnx.BatchStat)


def _images(source, R: int, batch: int, order: np.ndarray):
    for s in range(0, len(order), batch):
        recs = source.__getitems__([int(i) for i in order[s : s + batch]])
        yield np.stack([model_input(r["image"], R, R) for r in recs]), np.array([r["label"] for r in recs])


def finetune(
    model: Classifier, train_source, val_source, R: int, cfg: TrainConfig, seed: int, workdir: Path, log=print
) -> tuple[Classifier, list[dict]]:
    """Train block 5 and the head on images; returns the model (best epoch) and the history."""
    batch = min(cfg.batch_size, len(train_source))

    @nnx.jit
    def scored(model, x, y, w):
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return (loss * w).sum(), ((logits.argmax(-1) == y) * w).sum()

    def validate(model) -> tuple[float, float]:
        total_loss = total_correct = 0.0
        m = len(val_source)
        for x, y in _images(val_source, R, batch, np.arange(m)):
            k = len(y)  # the last batch is padded to the fixed shape, with weight 0
            w = np.concatenate([np.ones(k), np.zeros(batch - k)]).astype(np.float32)
            x = np.concatenate([x, np.zeros((batch - k,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros(batch - k, y.dtype)])
            loss_sum, correct = scored(model, x, y, w)
            total_loss += float(loss_sum)
            total_correct += float(correct)
        return total_loss / m, total_correct / m

    return fit(
        model,
        len(train_source),
        lambda order, rng: _images(train_source, R, batch, order),
        validate,
        Schedule.of(cfg),
        seed,
        workdir,
        wrt=trainable,
        saved=changed,
        log=log,
        name=f"fine-tuning {R} px",
    )
