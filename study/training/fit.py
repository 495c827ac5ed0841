"""The training loop every trained model shares: seeded epochs, early stopping, checkpoints, resume.

Heads on cached features, block 5 on cached block-4 maps (study.stages.train) and block 5 on images
(study.training.finetune) differ only in what a batch is and which parameters move; this loop is the
rest. Each epoch visits the training rows in an order drawn from a generator seeded by
(seed, epoch), in fixed-size batches (the last completed by wrapping around, so batch
statistics never see padding, and the step compiles once), and reseeds dropout from (seed,
epoch): an epoch's result depends only on the state at its start. After every epoch the
model, the optimizer, the best epoch's parameters and the history are written to
`workdir/checkpoint.npz`, so a run resumed from it ends exactly where an uninterrupted one
does. Validation loss decides early stopping; the parameters of the best epoch are kept. A
NaN loss stops with the epoch named.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Callable, Iterator

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from study.core.errors import TrainingDiverged
from study.core.files import write_bytes_atomic
from study.core.store import ModelFiles
from study.network.model import SAVED, state_arrays, state_from_arrays


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long and in what steps a model trains (from TrainConfig or Block5Config)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int

    @classmethod
    def of(cls, cfg) -> "Schedule":
        """The schedule with the fields of the same names taken from `cfg`."""
        return cls(*(getattr(cfg, f.name) for f in dataclasses.fields(cls)))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` as an .npz file to `path`, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


_steps: dict = {}


def train_step(wrt):
    """The jitted training step for parameters `wrt` (one per filter, compiled once per shape)."""
    if wrt not in _steps:

        @nnx.jit
        def step(model, optimizer, x, y):
            def loss_fn(model):
                logits = model(x)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

            (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True, argnums=nnx.DiffState(0, wrt))(model)
            optimizer.update(model, grads)
            return loss, (logits.argmax(-1) == y).mean()

        _steps[wrt] = step
    return _steps[wrt]


Batches = Callable[[np.ndarray, np.random.Generator], Iterator[tuple[np.ndarray, np.ndarray]]]


def fit(
    model: nnx.Module,
    n: int,
    batches: Batches,
    validate: Callable[[nnx.Module], tuple[float, float]],
    schedule: Schedule,
    seed: int,
    workdir: Path,
    *,
    wrt=nnx.Param,
    saved=SAVED,
    log=print,
    name: str = "",
) -> tuple[nnx.Module, list[dict]]:
    """Train `model`'s `wrt` parameters; returns the model holding the best epoch's and the history.

    `batches(order, rng)` yields (inputs, labels) for the training rows `order` (its length a
    multiple of the batch size), in that order and in batches of the batch size; it may draw
    from `rng` (after the order was drawn), e.g. which augmented view each row shows.
    `validate(model)` returns the validation (loss, accuracy) in eval mode. `saved` are the
    variables checkpointed and kept (those that training changes).
    """
    optimizer = nnx.Optimizer(model, optax.adamw(schedule.learning_rate, weight_decay=schedule.weight_decay), wrt=wrt)
    best = state_arrays(nnx.state(model, saved))  # a copy: nnx.state aliases the live parameters
    history: list[dict] = []
    best_val, bad, start = np.inf, 0, 0
    ckpt = ModelFiles(workdir).checkpoint
    if ckpt.is_file():
        with np.load(ckpt) as z:
            arrays = {k: z[k] for k in z.files}
        nnx.update(model, state_from_arrays(nnx.state(model, saved), arrays, "model"))
        nnx.update(optimizer, state_from_arrays(nnx.state(optimizer, nnx.OptState), arrays, "opt"))
        best = {k[len("best") :]: v for k, v in arrays.items() if k.startswith("best")}
        meta = json.loads(str(arrays["meta"]))
        history, best_val, bad, start = meta["history"], meta["best_val"], meta["bad"], meta["epoch"]
        log(f"{name}: resuming after epoch {start}")
    batch = min(schedule.batch_size, n)
    steps = -(-n // batch)
    step = train_step(wrt)
    for epoch in range(start, schedule.epochs):
        if bad >= schedule.patience:
            break
        t0 = time.perf_counter()
        model.train()
        nnx.reseed(model, dropout=seed * 100_003 + epoch)
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        order = np.concatenate([order, order[: steps * batch - n]])  # wrap: fixed batch shape
        losses, accs = [], []
        for x, y in batches(order, rng):
            loss, acc = step(model, optimizer, jnp.asarray(x), jnp.asarray(y))
            losses.append(float(loss))
            accs.append(float(acc))
        train_loss = float(np.mean(losses))
        if not np.isfinite(train_loss):
            raise TrainingDiverged(f"{name}: training loss is {train_loss} at epoch {epoch + 1}; stopped")
        model.eval()
        val_loss, val_acc = validate(model)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_accuracy": float(np.mean(accs)),
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        if val_loss < best_val:
            best_val, bad, best = val_loss, 0, state_arrays(nnx.state(model, saved))
        else:
            bad += 1
        arrays = {f"model{k}": v for k, v in state_arrays(nnx.state(model, saved)).items()}
        arrays |= {f"opt{k}": v for k, v in state_arrays(nnx.state(optimizer, nnx.OptState)).items()}
        arrays |= {f"best{k}": v for k, v in best.items()}
        arrays["meta"] = np.array(
            json.dumps({"history": history, "best_val": best_val, "bad": bad, "epoch": epoch + 1})
        )
        save_npz(ckpt, arrays)
    nnx.update(model, state_from_arrays(nnx.state(model, saved), best))
    model.eval()
    return model, history


def fixed_batches(x: np.ndarray, y: np.ndarray, views: list[np.ndarray] = (), batch: int = 128) -> Batches:
    """`fit`'s batches of in-memory rows; with `views` (arrays like `x`, row for row), each row
    appears each epoch as itself or one of its views, drawn uniformly per (seed, epoch)."""

    def batches(order: np.ndarray, rng: np.random.Generator):
        pick = rng.integers(0, len(views) + 1, len(order)) if views else None
        b = min(batch, len(y))
        for s in range(0, len(order), b):
            idx = order[s : s + b]
            xb = x[idx]
            if pick is not None:
                p = pick[s : s + b]
                for v, xv in enumerate(views, 1):
                    xb = np.where((p == v).reshape((-1,) + (1,) * (xb.ndim - 1)), xv[idx], xb)
            yield xb, y[idx]

    return batches
