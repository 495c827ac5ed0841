"""Heads trained with optax on cached features; checkpoints every epoch; resumable.

One unit per (train dataset, resolution R, seed). Each epoch visits the training features in
an order drawn from a generator seeded by (seed, epoch), in fixed-size batches (the last one
completed by wrapping around, so batch statistics never see padding), and reseeds dropout
from (seed, epoch): an epoch's result depends only on the state at its start, so a run
resumed from its last checkpoint ends exactly where an uninterrupted one does. Validation
loss decides early stopping; the parameters of the best epoch are kept. A NaN loss stops
with the epoch named. Inputs are read, and outputs located, through study.store.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from study import store
from study.config import TrainConfig
from study.context import Context
from study.datasets.labels import CANONICAL
from study.datasets.splits import spread_draw
from study.files import write_bytes_atomic, write_json_atomic
from study.names import RANDOM, parse, skipped
from study.model import SAVED, head_arrays, make_head, predict_logits, state_arrays, state_from_arrays
from study.plots import plot_curves
from study.units import is_done, mark_done

# Bump when training changes what it produces, so that existing heads count as stale.
# 2: the kept parameters are a copy of the best epoch's (1 kept the last epoch's by aliasing).
TRAIN_VERSION = 2


def new_head(cfg: TrainConfig, in_dim: int, seed: int) -> nnx.Module:
    return make_head(cfg.head, in_dim, len(CANONICAL), rngs=nnx.Rngs(params=seed, dropout=seed))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


@nnx.jit
def _train_step(model, optimizer, x, y):
    def loss_fn(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, (logits.argmax(-1) == y).mean()


def _loss_acc(model, feats, labels) -> tuple[float, float]:
    logits = predict_logits(model, feats, len(CANONICAL))
    loss = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels))
    return float(loss.mean()), float((logits.argmax(-1) == labels).mean())


def train_head(train_x, train_y, val_x, val_y, cfg: TrainConfig, seed: int, workdir: Path,
               train_x_flip=None, log=print, name: str = "") -> tuple[nnx.Module, list[dict]]:
    """Train one head; resumes from `workdir/checkpoint.npz` if a run was interrupted."""
    model = new_head(cfg, train_x.shape[1], seed)
    optimizer = nnx.Optimizer(model, optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay), wrt=nnx.Param)
    best = state_arrays(nnx.state(model, SAVED))  # a copy: nnx.state aliases the live parameters
    history: list[dict] = []
    best_val, bad, start = np.inf, 0, 0
    ckpt = workdir / "checkpoint.npz"
    if ckpt.is_file():
        with np.load(ckpt) as z:
            arrays = {k: z[k] for k in z.files}
        nnx.update(model, state_from_arrays(nnx.state(model, SAVED), arrays, "model"))
        nnx.update(optimizer, state_from_arrays(nnx.state(optimizer, nnx.OptState), arrays, "opt"))
        best = {k[len("best"):]: v for k, v in arrays.items() if k.startswith("best")}
        meta = json.loads(str(arrays["meta"]))
        history, best_val, bad, start = meta["history"], meta["best_val"], meta["bad"], meta["epoch"]
        log(f"{name}: resuming after epoch {start}")
    n = len(train_y)
    batch = min(cfg.batch_size, n)
    steps = -(-n // batch)
    for epoch in range(start, cfg.epochs):
        if bad >= cfg.patience:
            break
        t0 = time.perf_counter()
        model.train()
        nnx.reseed(model, dropout=seed * 100_003 + epoch)
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        order = np.concatenate([order, order[: steps * batch - n]])  # wrap: fixed batch shape
        use_flip = rng.random(len(order)) < 0.5 if train_x_flip is not None else None
        losses, accs = [], []
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            x = train_x[idx]
            if use_flip is not None:
                f = use_flip[s * batch : (s + 1) * batch]
                x = np.where(f[:, None], train_x_flip[idx], x)
            loss, acc = _train_step(model, optimizer, jnp.asarray(x), jnp.asarray(train_y[idx]))
            losses.append(float(loss))
            accs.append(float(acc))
        train_loss = float(np.mean(losses))
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"{name}: training loss is {train_loss} at epoch {epoch + 1}; stopped")
        val_loss, val_acc = _loss_acc(model, val_x, val_y)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": float(np.mean(accs)),
                        "val_loss": val_loss, "val_accuracy": val_acc, "seconds": round(time.perf_counter() - t0, 3)})
        if val_loss < best_val:
            best_val, bad, best = val_loss, 0, state_arrays(nnx.state(model, SAVED))
        else:
            bad += 1
        arrays = {f"model{k}": v for k, v in state_arrays(nnx.state(model, SAVED)).items()}
        arrays |= {f"opt{k}": v for k, v in state_arrays(nnx.state(optimizer, nnx.OptState)).items()}
        arrays |= {f"best{k}": v for k, v in best.items()}
        arrays["meta"] = np.array(json.dumps({"history": history, "best_val": best_val, "bad": bad, "epoch": epoch + 1}))
        _save_npz(ckpt, arrays)
    nnx.update(model, state_from_arrays(nnx.state(model, SAVED), best))
    model.eval()
    return model, history


def unit_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    if ctx.preset.train.finetune:  # trained on images: its inputs are the weights and the data
        return {"kind": "finetune", "version": TRAIN_VERSION, "dataset": dataset, "R": R, "seed": seed,
                "train": dataclasses.asdict(ctx.preset.train), "weights": ctx.weights_record["converted_sha256"],
                "dataset_fingerprint": ctx.dataset_fingerprint(dataset)}
    if dataset.endswith(RANDOM):
        fps = {s: store.features_fingerprint(ctx, dataset.removesuffix(RANDOM), s, R, R) for s in store.ABLATION_SPLITS}
        return {"kind": "train", "version": TRAIN_VERSION, "dataset": dataset, "R": R, "seed": seed,
                "train": dataclasses.asdict(ctx.preset.train), "features": fps, "random_split_seed": store.RANDOM_SPLIT_SEED}
    m = parse(dataset)
    if m.kind != "single":  # multi-source and few-shot: several datasets' features, shared labels
        fps = {f"{d}/{s}": store.features_fingerprint(ctx, d, s, R, R) for d in m.sources for s in ("train", "validation")}
        if m.target:
            fps[f"{m.target}/train"] = store.features_fingerprint(ctx, m.target, "train", R, R)
        return {"kind": "train", "version": TRAIN_VERSION, "dataset": dataset, "R": R, "seed": seed,
                "train": dataclasses.asdict(ctx.preset.train), "features": fps, "classes": ctx.classes(dataset)}
    fps = {s: store.features_fingerprint(ctx, dataset, s, R, R) for s in ("train", "validation")}
    if ctx.preset.train.flip:
        fps["train_flip"] = store.features_fingerprint(ctx, dataset, "train", R, R, True)
    return {"kind": "train", "version": TRAIN_VERSION, "dataset": dataset, "R": R, "seed": seed,
            "train": dataclasses.asdict(ctx.preset.train), "features": fps}


def _shared(ctx: Context, dataset: str, split: str, R: int, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A split's cached features, only the rows whose label is in `classes`."""
    x, y, _ = store.load_features(ctx, dataset, split, R, R)
    keep = np.isin(y, classes)
    return x[keep], y[keep]


def combined_data(ctx: Context, name: str, R: int, seed: int) -> tuple[tuple, tuple, dict | None]:
    """Training and validation data of a multi-source or few-shot model, and the few-shot draw.

    Multi-source: the union of the sources' training (and validation) splits, labels
    restricted to those every source has. Few-shot: the source's training split plus k images
    per label of the target's training split, drawn per seed and spread over the target's
    recording (study.datasets.splits.spread_draw); validation is the source's alone (a user
    with k photos per letter has no validation set of the target). Budget: no forward pass,
    only the head, a few seconds on 2 cores.
    """
    from study.datasets.build import read_index

    m = parse(name)
    classes = ctx.classes(name)
    train = [_shared(ctx, d, "train", R, classes) for d in m.sources]
    val = [_shared(ctx, d, "validation", R, classes) for d in m.sources]
    draw = None
    if m.target:
        x, y, _ = store.load_features(ctx, m.target, "train", R, R)
        index = read_index(ctx.builder(m.target))["train"]
        if not np.array_equal(index["label"], y):
            raise ValueError(f"{m.target}/train: cached features and the prepared dataset disagree; run features with --force")
        eligible = np.flatnonzero(np.isin(y, classes))
        picked = eligible[spread_draw(y[eligible], index["frame"][eligible], m.k, seed)]
        train.append((x[picked], y[picked]))
        per_label = {CANONICAL[c]: int((y[picked] == c).sum()) for c in classes}
        draw = {"target": m.target, "k": m.k, "seed": seed, "images": len(picked), "per_label": per_label,
                "short": {c: n for c, n in per_label.items() if n < m.k},  # labels with fewer than k images
                "files": [str(index["file"][i]) for i in picked], "frames": [int(index["frame"][i]) for i in picked]}
    cat = lambda parts: (np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]))
    return cat(train), cat(val), draw


def run_stage(ctx: Context) -> None:
    """Train every model of the preset that is not done (or whose files are damaged)."""
    p = ctx.preset
    for name in skipped(store.trainable_labels(ctx), multi_source=p.multi_source, few_shot=p.few_shot):
        ctx.echo(f"{name}: skipped, its datasets share no label")
    for dataset, R, seed in store.models(ctx):
        d = store.model_dir(ctx, dataset, R, seed)
        spec = unit_spec(ctx, dataset, R, seed)
        if is_done(d / "unit.json", spec, force=ctx.force):
            continue
        if (d / "unit.json").exists():  # stale (with --force) or damaged: start over
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        name = f"{dataset}@{R} seed {seed}"
        extra = {}
        if ctx.preset.train.finetune:
            model, history, backbone_sha = _finetune(ctx, dataset, R, seed)
            extra["backbone_sha256"] = backbone_sha
        elif parse(dataset).kind in ("multi-source", "few-shot"):
            (tx, ty), (vx, vy), draw = combined_data(ctx, dataset, R, seed)
            if draw is not None:
                write_json_atomic(d / "draw.json", draw)
            model, history = train_head(tx, ty, vx, vy, ctx.preset.train, seed, d, None, ctx.echo, name)
        elif dataset.endswith(RANDOM):
            parts, _ = store.random_split(ctx, dataset, R)
            (tx, ty), (vx, vy) = parts["train"], parts["validation"]
            model, history = train_head(tx, ty, vx, vy, ctx.preset.train, seed, d, None, ctx.echo, name)
        else:
            tx, ty, _ = store.load_features(ctx, dataset, "train", R, R)
            vx, vy, _ = store.load_features(ctx, dataset, "validation", R, R)
            tflip = store.load_features(ctx, dataset, "train", R, R, True)[0] if ctx.preset.train.flip else None
            model, history = train_head(tx, ty, vx, vy, ctx.preset.train, seed, d, tflip, ctx.echo, name)
        _save_npz(d / "head.npz", head_arrays(model))
        best = min(history, key=lambda h: h["val_loss"])
        write_json_atomic(d / "history.json", {"model": name, "history": history, "best_epoch": best["epoch"]})
        plot_curves(history, d / "curves.png", title=name)
        files = [d / "head.npz", d / "history.json", d / "curves.png"] + ([d / "block5.npz"] if ctx.preset.train.finetune else [])
        files += [d / "draw.json"] if (d / "draw.json").is_file() else []
        mark_done(d / "unit.json", spec, files, epochs=len(history), best_epoch=best["epoch"],
                  val_accuracy=best["val_accuracy"], seconds=round(time.perf_counter() - t0, 2), **extra)
        (d / "checkpoint.npz").unlink(missing_ok=True)
        ctx.echo(f"trained {name}: {len(history)} epochs, best {best['epoch']} "
                 f"(validation accuracy {best['val_accuracy']:.3f})")


def _finetune(ctx: Context, dataset: str, R: int, seed: int):
    """Fine-tune block 5 and a head on images; saves block 5 beside the head. Returns the head,
    the history and the sha256 of the fine-tuned backbone's weights."""
    from study import finetune, weights
    from study.model import BLOCK5, Classifier, VGG16Backbone

    base = ctx.load_weights()
    backbone = weights.apply(nnx.eval_shape(lambda: VGG16Backbone(rngs=nnx.Rngs(0))), base)
    head = new_head(ctx.preset.train, backbone.features_dim, seed)
    source = ctx.builder(dataset).as_data_source()
    history = finetune.finetune(Classifier(backbone, head), source["train"], source["validation"], R,
                                ctx.preset.train, seed, ctx.echo)
    layers = {i: (np.array(backbone.convs[i].kernel[...]), np.array(backbone.convs[i].bias[...])) for i in BLOCK5}
    _save_npz(store.model_dir(ctx, dataset, R, seed) / "block5.npz",
              {f"{p}_{i}": a for i, ka in layers.items() for p, a in zip(("kernel", "bias"), ka)})
    tuned = weights.with_layers(base, layers, f"block 5 fine-tuned ({dataset}@{R} seed {seed})")
    return head, history, tuned.sha256()
