"""Heads trained together: every member of a group (the seeds of one model) in one compiled
program per epoch.

`fit` (study.training.fit) trains one model with a Python step loop: a host synchronisation
after every step, a validation pass and a checkpoint file per epoch, a compilation per head.
For a head on cached features that is nearly all the cost (a head is about 0.83 MFLOP per
training example forward and backward). Here the members' parameters are stacked on a
leading axis and an epoch is one jitted program: `jax.vmap` over the members of one
`jax.lax.scan` over the epoch's steps, then the validation of every member, with one host
synchronisation per epoch for the whole group.

Each member is the same function of its seed as `fit` makes it, in distribution: the same
initialisation (the head built from its seed), the same data order (a permutation drawn from
a generator seeded by (seed, epoch), the last batch completed by wrapping, each row's view
drawn after it), the same optimizer (AdamW is elementwise, so one optimizer on the stacked
parameters is each member's own), dropout keyed by (seed, epoch) and the step. Early stopping
is per member: a member whose validation loss has not improved for `patience` epochs stops
updating (its parameters and optimizer state are kept as they are, masked in the program)
while the others go on; the best epoch's parameters are kept per member. After every epoch
the group's state is written to one checkpoint (`workdir/checkpoint.npz`), from which an
interrupted run resumes and ends exactly where an uninterrupted one does.

Members may see different rows (a few-shot model draws its target images per seed): each
member has its own row indices into one shared table of rows, of the same length.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from study.core.errors import TrainingDiverged
from study.network.model import state_arrays, state_from_arrays
from study.training.fit import Schedule, save_npz

# Dropout of member `seed` in epoch e is keyed by seed * DROPOUT_STRIDE + e (as in fit), then the step.
DROPOUT_STRIDE = 100_003


def _stack(trees: list):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _member(tree, m: int):
    return jax.tree.map(lambda x: x[m], tree)


def _rest(model: nnx.Module) -> tuple:
    """A model's state besides its parameters: batch statistics (checkpointed and kept with the
    best epoch) and the rest, its dropout streams (reseeded at every epoch's start, never saved)."""
    return nnx.state(model, nnx.BatchStat), nnx.state(model, nnx.Not(nnx.Any(nnx.Param, nnx.BatchStat)))


def _epoch_program(graphdef, tx: optax.GradientTransformation):
    """One epoch of every member, compiled once per shape: (params, rest, opt_state, active,
    table, labels, rows, views, seeds, val_x, val_y) -> (params, rest, opt_state, and per member
    the training loss and accuracy and the validation loss and accuracy). `rest` is the rest of
    the members' state (dropout streams, batch statistics), carried from step to step."""

    def merged(params, rest, train: bool):
        # Variables made afresh at this trace level (nnx refuses to mutate one made at another)
        def fresh(tree):
            return jax.tree.map(jnp.asarray, tree)

        model = nnx.merge(graphdef, fresh(params), *fresh(rest))
        model.train() if train else model.eval()
        return model

    def reseed(params, rest, dropout_seed):
        model = merged(params, rest, True)
        nnx.reseed(
            model, dropout=jax.random.key(dropout_seed)
        )  # as fit: the stream of (seed, epoch), counted on per step
        return _rest(model)

    def member_loss(params, rest, x, y):
        model = merged(params, rest, True)
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (_rest(model), (logits.argmax(-1) == y).mean())

    grads = jax.vmap(jax.value_and_grad(member_loss, has_aux=True))

    def validate(params, rest, x, y):
        logits = merged(params, rest, False)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits.argmax(-1) == y).mean()

    def masked(active, new, old):
        """`new` for the active members, `old` for those stopped (scalars, such as AdamW's step count, are shared)."""
        return jax.tree.map(
            lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b) if a.ndim else a, new, old
        )

    @jax.jit
    def epoch(
        params, rest, opt_state, active, table_VxNxD, labels_N, rows_SxMxB, views_SxMxB, dropout_seeds_M, val_x, val_y
    ):
        rest = masked(active, jax.vmap(reseed)(params, rest, dropout_seeds_M), rest)  # stopped members keep theirs

        def step(carry, batch):
            params, rest, opt_state = carry
            rows_MxB, views_MxB = batch
            x, y = table_VxNxD[views_MxB, rows_MxB], labels_N[rows_MxB]
            (loss_M, (new_rest, acc_M)), g = grads(params, rest, x, y)
            updates, new_opt = tx.update(g, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            carry = (
                masked(active, new_params, params),
                masked(active, new_rest, rest),
                masked(active, new_opt, opt_state),
            )
            return carry, (loss_M, acc_M)

        (params, rest, opt_state), (loss_SxM, acc_SxM) = jax.lax.scan(
            step, (params, rest, opt_state), (rows_SxMxB, views_SxMxB)
        )
        val_loss, val_acc = jax.vmap(validate, in_axes=(0, 0, None, None))(params, rest, val_x, val_y)
        return params, rest, opt_state, loss_SxM.mean(0), acc_SxM.mean(0), val_loss, val_acc

    return epoch


def _checkpoint(path: Path, identity: str, seeds: list[int], log) -> dict[str, np.ndarray] | None:
    """The arrays of a group's checkpoint, if it is this group's (else None: start over)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError) as e:
        log(f"{path}: unreadable checkpoint ({e}); starting over")
        return None
    if meta.get("identity") != identity or meta.get("seeds") != list(seeds):
        log(f"{path}: a checkpoint of other members or another configuration; starting over")
        return None
    return arrays


def fit_group(
    heads: list[nnx.Module],
    seeds: list[int],
    table: np.ndarray,
    labels: np.ndarray,
    rows: list[np.ndarray],
    val_x: np.ndarray,
    val_y: np.ndarray,
    schedule: Schedule,
    ckpt: Path,
    *,
    log=print,
    names: list[str] | None = None,
    identity: str = "",
) -> list[tuple[nnx.Module, list[dict]]]:
    """Train the `heads` (one per seed, of one kind and shape) together; each returned holding
    its best epoch's parameters, with its history.

    `table` is V x N x D: the N rows every member may see, as themselves (view 0) and their V - 1
    augmented views; `labels` their labels; `rows[m]` the indices of member m's training rows
    (all of the same length n). `val_x`, `val_y`: the validation rows, shared by the members.
    `ckpt`: the group's checkpoint file; one written for another `identity` (other members,
    configuration or inputs) is not resumed from.
    """
    M, n = len(heads), len(rows[0])
    if any(len(r) != n for r in rows) or len(seeds) != M:
        raise ValueError("every member needs a seed and the same number of training rows")
    names = names or [f"seed {s}" for s in seeds]
    graphdef = nnx.graphdef(heads[0])
    params = _stack([nnx.state(h, nnx.Param) for h in heads])
    rest = _stack([_rest(h) for h in heads])
    tx = optax.adamw(schedule.learning_rate, weight_decay=schedule.weight_decay)
    opt_state = tx.init(params)
    best = [state_arrays(_member(params, m)) for m in range(M)]
    best_rest = [state_arrays(_member(rest[0], m)) for m in range(M)]
    history: list[list[dict]] = [[] for _ in range(M)]
    best_val, bad, start = np.full(M, np.inf), np.zeros(M, int), 0
    arrays = _checkpoint(ckpt, identity, seeds, log)
    if arrays is not None:
        params = state_from_arrays(params, arrays, "params")
        rest = (state_from_arrays(rest[0], arrays, "stats"), rest[1])
        opt_state = jax.tree.unflatten(
            jax.tree.structure(opt_state),
            [jnp.asarray(arrays[f"opt{i}"]) for i in range(len(jax.tree.leaves(opt_state)))],
        )
        meta = json.loads(str(arrays["meta"]))
        best = [{k: arrays[f"best{m}:{k}"] for k in best[m]} for m in range(M)]
        best_rest = [{k: arrays[f"bestrest{m}:{k}"] for k in best_rest[m]} for m in range(M)]
        history, best_val, bad, start = (
            meta["history"],
            np.array(meta["best_val"]),
            np.array(meta["bad"]),
            meta["epoch"],
        )
        log(f"{', '.join(names)}: resuming after epoch {start}")
    batch = min(schedule.batch_size, n)
    steps = -(-n // batch)
    program = _epoch_program(graphdef, tx)
    table_j, labels_j = jnp.asarray(table), jnp.asarray(labels)
    val_xj, val_yj = jnp.asarray(val_x), jnp.asarray(val_y)
    for epoch in range(start, schedule.epochs):
        active = bad < schedule.patience
        if not active.any():
            break
        t0 = time.perf_counter()
        order_rows, order_views = [], []
        for m, seed in enumerate(seeds):  # the order fit draws: a permutation of (seed, epoch), wrapped, then the views
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(n)
            order = np.concatenate([order, order[: steps * batch - n]])
            order_views.append(rng.integers(0, len(table), len(order)) if len(table) > 1 else np.zeros(len(order), int))
            order_rows.append(rows[m][order])

        def shape(a):
            return jnp.asarray(np.stack(a).reshape(M, steps, batch).transpose(1, 0, 2))

        dropout = jnp.asarray([seed * DROPOUT_STRIDE + epoch for seed in seeds], jnp.uint32)
        params, rest, opt_state, tl, ta, vl, va = program(
            params,
            rest,
            opt_state,
            jnp.asarray(active),
            table_j,
            labels_j,
            shape(order_rows),
            shape(order_views),
            dropout,
            val_xj,
            val_yj,
        )
        tl, ta, vl, va = (np.asarray(a, np.float64) for a in (tl, ta, vl, va))  # the epoch's one synchronisation
        seconds = round(time.perf_counter() - t0, 3)
        for m in np.flatnonzero(active):
            if not np.isfinite(tl[m]):
                raise TrainingDiverged(f"{names[m]}: training loss is {tl[m]} at epoch {epoch + 1}; stopped")
            history[m].append(
                {
                    "epoch": epoch + 1,
                    "train_loss": float(tl[m]),
                    "train_accuracy": float(ta[m]),
                    "val_loss": float(vl[m]),
                    "val_accuracy": float(va[m]),
                    "seconds": seconds,
                }
            )
            if vl[m] < best_val[m]:
                best_val[m], bad[m] = vl[m], 0
                best[m], best_rest[m] = state_arrays(_member(params, m)), state_arrays(_member(rest[0], m))
            else:
                bad[m] += 1
        arrays = {f"params{k}": v for k, v in state_arrays(params).items()}
        arrays |= {f"stats{k}": v for k, v in state_arrays(rest[0]).items()}
        arrays |= {f"opt{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(opt_state))}
        for m in range(M):
            arrays |= {f"best{m}:{k}": v for k, v in best[m].items()} | {
                f"bestrest{m}:{k}": v for k, v in best_rest[m].items()
            }
        arrays["meta"] = np.array(
            json.dumps(
                {
                    "history": history,
                    "best_val": best_val.tolist(),
                    "bad": bad.tolist(),
                    "epoch": epoch + 1,
                    "identity": identity,
                    "seeds": list(seeds),
                }
            )
        )
        save_npz(ckpt, arrays)
    out = []
    for m, head in enumerate(heads):
        nnx.update(head, state_from_arrays(nnx.state(head, nnx.Param), best[m]))
        nnx.update(head, state_from_arrays(nnx.state(head, nnx.BatchStat), best_rest[m]))
        head.eval()
        out.append((head, history[m]))
    return out
