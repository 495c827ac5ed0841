"""Models trained with optax: heads on cached features, block 5 on cached block-4 maps.

One unit per (model name, resolution R, seed) (names: study.core.names). The recipe, with its
seeded epochs, early stopping, checkpoints every epoch and exact resume, is study.training.fit's;
the seeds of a head train together in one compiled program (study.training.group).
Augmented models see each training image as itself or one of its cached augmented views;
`<dataset>/ft5` models fine-tune block 5 and the head on the cached block-4 maps. Inputs are
read, and outputs located, through study.core.store.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
from flax import nnx

from study.datasets import open_builder
from study.core import store
from study.core.context import Context
from study.core.errors import StaleResultError
from study.core.labels import CANONICAL
from study.core.splits import spread_draw
from study.core.files import write_json_atomic
from study.core.names import RANDOM, parse
from study.training.fit import Schedule, fit, fixed_batches, save_npz
from study.training.heads import loss_acc, new_head
from study.network.model import Block5, Classifier, head_arrays, head_from_arrays
from study.core.plots import plot_curves
from study.core.units import is_done, mark_done

# Bump when training changes what it produces, so that existing heads count as stale.
# 2: the kept parameters are a copy of the best epoch's (1 kept the last epoch's by aliasing).
# 3: heads trained with their model's other seeds in one program (study.training.group): the
#    same heads to float rounding, but not the same bytes.
TRAIN_VERSION = 3


def train_block5(ctx: Context, dataset: str, R: int, seed: int, workdir: Path) -> tuple[nnx.Module, Block5, list[dict]]:
    """`<dataset>/ft5`: block 5 (from ImageNet) and the head (from the frozen baseline model of
    the same dataset, R and seed) fine-tuned together on cached block-4 maps.

    Budget: block 5 is 9% of VGG16's multiply-adds; forward and backward, about 27% of one
    full forward pass per image and epoch, nothing for blocks 1-4 (cached). Its convolutions
    take study.network.conv's paths (Winograd on CPU; see Block5Config for the rates and the
    batch); `bench` measures training images/s per path.
    """
    from study.network import weights

    cfg = ctx.preset.block5
    base = parse(dataset).sources[0]
    backbone = weights.imagenet_backbone(weights.prepared(ctx))
    block5 = Block5.of(backbone)
    head = head_from_arrays(ctx.preset.train.head, store.head_arrays(ctx, base, R, seed), block5.features_dim,
                            len(CANONICAL), seed)
    tx, ty = store.load_maps(ctx, base, "train", R)
    vx, vy = store.load_maps(ctx, base, "validation", R)
    model = Classifier(block5, head)
    model, history = fit(model, len(ty), fixed_batches(tx, ty, batch=cfg.batch_size), lambda m: loss_acc(m, vx, vy),
                         Schedule.of(cfg), seed, workdir, log=ctx.echo, name=f"{dataset}/ft5@{R} seed {seed}")
    return model.head, model.backbone, history


def _spec(ctx: Context, kind: str, dataset: str, R: int, seed: int, **inputs) -> dict:
    return {"kind": kind, "version": TRAIN_VERSION, "dataset": dataset, "R": R, "seed": seed, **inputs}


def _features(ctx: Context, dataset: str, R: int, splits=("train", "validation")) -> dict[str, str]:
    return {s: store.features_fingerprint(ctx, dataset, s, R, R) for s in splits}


def _image_level_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Trained on images: its inputs are the weights and the data."""
    return _spec(ctx, "finetune", dataset, R, seed, train=dataclasses.asdict(ctx.preset.train),
                 weights=ctx.weights_record["converted_sha256"], dataset_fingerprint=ctx.dataset_fingerprint(dataset))


def _ablation_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    return _spec(ctx, "train", dataset, R, seed, train=dataclasses.asdict(ctx.preset.train),
                 features=_features(ctx, dataset.removesuffix(RANDOM), R, store.ABLATION_SPLITS),
                 random_split_seed=store.RANDOM_SPLIT_SEED)


def _block5_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Block 5 on the block-4 maps, from the baseline model's head."""
    base = parse(dataset).sources[0]
    return _spec(ctx, "block5", dataset, R, seed, block5=dataclasses.asdict(ctx.preset.block5), head=ctx.preset.train.head,
                 maps=_features(ctx, base, R), weights=ctx.weights_record["converted_sha256"],
                 baseline=store.model_record(ctx, base, R, seed)["fingerprint"])


def _augmented_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """The original features and every augmented view's."""
    m = parse(dataset)
    fps = _features(ctx, m.sources[0], R) | {f"train_aug{v}": store.features_fingerprint(ctx, m.sources[0], "train", R, R, view=v)
                                             for v in range(1, m.views + 1)}
    return _spec(ctx, "train", dataset, R, seed, train=dataclasses.asdict(ctx.preset.train), features=fps)


def _combined_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Multi-source and few-shot: several datasets' features, shared labels."""
    m = parse(dataset)
    fps = {f"{d}/{s}": fp for d in m.sources for s, fp in _features(ctx, d, R).items()}
    if m.target:
        fps[f"{m.target}/train"] = store.features_fingerprint(ctx, m.target, "train", R, R)
    return _spec(ctx, "train", dataset, R, seed, train=dataclasses.asdict(ctx.preset.train), features=fps,
                 classes=ctx.plan.classes(dataset))


def _adapted_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """The source's features and the target's training features (never its labels); for
    self-training, the source's frozen model it starts from and the labels it may choose."""
    m = parse(dataset)
    cfg = ctx.preset.adapt
    fps = _features(ctx, m.sources[0], R) | {f"{m.target}/train": store.features_fingerprint(ctx, m.target, "train", R, R)}
    extra = {"coral_shrink": cfg.coral_shrink} if m.adapt == "coral" else {}
    if m.adapt == "self":
        extra = {"rounds": cfg.rounds, "confidence": cfg.confidence, "classes": ctx.plan.shared_classes(m.sources[0], m.target),
                 "baseline": store.model_record(ctx, m.sources[0], R, seed)["fingerprint"]}
    return _spec(ctx, "train", dataset, R, seed, train=dataclasses.asdict(ctx.preset.train), features=fps,
                 adapt={"method": m.adapt, **extra})


def train_adapted(ctx: Context, dataset: str, R: int, seeds: list[int], identity: str) -> list[Trained]:
    """`<source>+<method>(<target>)`: heads on the source's labelled features and the target's
    unlabelled training features (study.training.adapt); the target's labels are never read.
    Validation is the source's, as for few-shot models. Budget: heads only, seconds each."""
    from study.network.model import predict_logits
    from study.training import adapt

    m = parse(dataset)
    cfg, src = ctx.preset.adapt, m.sources[0]
    tx, ty, _ = store.load_features(ctx, src, "train", R, R)
    vx, vy = store.load_features(ctx, src, "validation", R, R)[:2]
    ux = store.load_features(ctx, m.target, "train", R, R)[0]
    every = [np.arange(len(ty))] * len(seeds)
    if m.adapt == "std":
        s, t = adapt.Standardise.of(tx), adapt.Standardise.of(ux)
        trained = train_heads(lambda *_: (s(tx)[None], ty, every, (s(vx), vy), [None] * len(seeds)), ctx, dataset, R, seeds, identity)
        for head, _, _ in trained:  # scored on the target: its own standardisation, in the head
            adapt.fold(head, t)
        return trained
    if m.adapt == "coral":
        affine = adapt.coral(tx, ux, cfg.coral_shrink)
        return train_heads(lambda *_: (adapt.apply(tx, affine)[None], ty, every, (adapt.apply(vx, affine), vy), [None] * len(seeds)),
                           ctx, dataset, R, seeds, identity)
    classes = ctx.plan.shared_classes(src, m.target)
    heads = {seed: head_from_arrays(ctx.preset.train.head, store.head_arrays(ctx, src, R, seed), tx.shape[1], len(CANONICAL), seed)
             for seed in seeds}
    rounds: dict[int, list[dict]] = {seed: [] for seed in seeds}
    for k in range(1, cfg.rounds + 1):
        picked = {seed: adapt.pseudo_labels(predict_logits(heads[seed], ux, len(CANONICAL)), classes, cfg.confidence)
                  for seed in seeds}
        table = np.concatenate([tx] + [ux[i] for i, _ in picked.values()])
        labels = np.concatenate([ty] + [y for _, y in picked.values()])
        ends = np.cumsum([len(ty)] + [len(i) for i, _ in picked.values()])
        rows = [np.concatenate([np.arange(len(ty)), np.arange(a, b)]) for a, b in zip(ends[:-1], ends[1:])]
        for seed, (i, y) in picked.items():
            rounds[seed].append({"round": k, "pseudo_labelled": len(i), "of": len(ux),
                                 "per_label": {CANONICAL[c]: int((y == c).sum()) for c in classes}})
        ctx.echo(f"{dataset}@{R} round {k}: pseudo-labels for " + ", ".join(
            f"{len(i)} of {len(ux)} (seed {seed})" for seed, (i, _) in picked.items()))
        trained = train_heads(lambda *_: (table[None], labels, rows, (vx, vy), [None] * len(seeds)), ctx, dataset, R, seeds,
                              f"{identity} round {k}")
        heads = {seed: head for seed, (head, _, _) in zip(seeds, trained)}
        group_checkpoint(ctx, dataset, R, seeds).unlink(missing_ok=True)  # a round done is not resumed
    for seed in seeds:
        write_json_atomic(store.model_dir(ctx, dataset, R, seed) / "pseudo.json",
                          {"target": m.target, "confidence": cfg.confidence, "rounds": rounds[seed]})
    return trained


def _single_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    fps = _features(ctx, dataset, R)
    if ctx.preset.train.flip:
        fps["train_flip"] = store.features_fingerprint(ctx, dataset, "train", R, R, True)
    return _spec(ctx, "train", dataset, R, seed, train=dataclasses.asdict(ctx.preset.train), features=fps)


def _view_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """A head on another view of a dataset's images (hand crops, landmark vectors, both; with
    augmented landmark views)."""
    m = parse(dataset)
    fps = {s: store.view_fingerprint(ctx, m.sources[0], s, R, R, m.input) for s in ("train", "validation")}
    fps |= {f"train_aug{v}": store.features_fingerprint(ctx, m.sources[0], "train", R, R, view=v, hand="landmarks")
            for v in range(1, m.landmark_views + 1)}
    return _spec(ctx, "train", dataset, R, seed, train=dataclasses.asdict(ctx.preset.train), features=fps)


def _view_rows(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
    """`<dataset>/hand`, `<dataset>/landmarks[/aug<K>]` and `<dataset>/hand+landmarks`: the
    features of the images' hand crops, their landmark vectors (and augmented views of them),
    or both side by side (study.core.store.load_view). A landmark model learns from the images
    where a hand was found only (the others have no landmarks; scoring counts them,
    study.stages.evaluate); the others from every image (a crop without a hand is the whole image)."""
    m = parse(dataset)
    base = m.sources[0]
    tx, ty, _ = store.load_view(ctx, base, "train", R, R, m.input)
    vx, vy, _ = store.load_view(ctx, base, "validation", R, R, m.input)
    views = [store.load_features(ctx, base, "train", R, R, view=v, hand="landmarks")[0] for v in range(1, m.landmark_views + 1)]
    table = np.stack([tx, *views])
    if m.input == "landmarks":
        tk, vk = store.load_found(ctx, base, "train"), store.load_found(ctx, base, "validation")
        table, ty, vx, vy = table[:, tk], ty[tk], vx[vk], vy[vk]
    return table, ty, [np.arange(len(ty))] * len(seeds), (vx, vy), [None] * len(seeds)


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
    recording (study.core.splits.spread_draw); validation is the source's alone (a user
    with k photos per letter has no validation set of the target). Budget: no forward pass,
    only the head, a few seconds on 2 cores.
    """
    from study.datasets.build import read_index

    m = parse(name)
    classes = ctx.plan.classes(name)
    train = [_shared(ctx, d, "train", R, classes) for d in m.sources]
    val = [_shared(ctx, d, "validation", R, classes) for d in m.sources]
    draw = None
    if m.target:
        x, y, _ = store.load_features(ctx, m.target, "train", R, R)
        index = read_index(open_builder(ctx, m.target))["train"]
        if not np.array_equal(index["label"], y):
            raise StaleResultError(f"{m.target}/train: cached features and the prepared dataset disagree; run features with --force")
        eligible = np.flatnonzero(np.isin(y, classes))
        picked = eligible[spread_draw(y[eligible], index["frame"][eligible], m.k, seed)]
        train.append((x[picked], y[picked]))
        per_label = {CANONICAL[c]: int((y[picked] == c).sum()) for c in classes}
        draw = {"target": m.target, "k": m.k, "seed": seed, "images": len(picked), "per_label": per_label,
                "short": {c: n for c, n in per_label.items() if n < m.k},  # labels with fewer than k images
                "files": [str(index["file"][i]) for i in picked], "frames": [int(index["frame"][i]) for i in picked]}
    cat = lambda parts: (np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]))
    return cat(train), cat(val), draw


# A trainer: (context, model name, R, seed, its folder) -> (head, fine-tuned block 5 or None, history).
Trained = tuple[nnx.Module, "Block5 | None", list[dict]]

# Rows of a group of heads (study.training.group.fit_group): the table of rows (V x N x D, the rows
# and their views), their labels, each member's row indices, the validation rows, each member's draw.
Rows = tuple[np.ndarray, np.ndarray, list[np.ndarray], tuple[np.ndarray, np.ndarray], list[dict | None]]


def _single_rows(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
    """A single dataset, with its augmented (or flipped) views if any: one table for every seed."""
    m = parse(dataset)
    base = m.sources[0]
    tx, ty, _ = store.load_features(ctx, base, "train", R, R)
    val = store.load_features(ctx, base, "validation", R, R)[:2]
    views = [store.load_features(ctx, base, "train", R, R, view=v)[0] for v in range(1, m.views + 1)]
    views += [store.load_features(ctx, base, "train", R, R, True)[0]] if ctx.preset.train.flip and not m.views else []
    return np.stack([tx, *views]), ty, [np.arange(len(ty))] * len(seeds), val, [None] * len(seeds)


def _combined_rows(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
    """Multi-source and few-shot models: a few-shot model draws its target rows per seed, so
    each seed's rows are its own part of the table."""
    parts = [combined_data(ctx, dataset, R, seed) for seed in seeds]
    if parts[0][2] is None:  # multi-source: the same rows for every seed
        (tx, ty), val, _ = parts[0]
        return tx[None], ty, [np.arange(len(ty))] * len(seeds), val, [None] * len(seeds)
    offsets = np.cumsum([0] + [len(p[0][1]) for p in parts])
    rows = [np.arange(a, b) for a, b in zip(offsets[:-1], offsets[1:])]
    table = np.concatenate([p[0][0] for p in parts])[None]
    return table, np.concatenate([p[0][1] for p in parts]), rows, parts[0][1], [p[2] for p in parts]


def _ablation_rows(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
    parts, _ = store.random_split(ctx, dataset, R)
    (tx, ty), val = parts["train"], parts["validation"]
    return tx[None], ty, [np.arange(len(ty))] * len(seeds), val, [None] * len(seeds)


def train_heads(rows_of, ctx: Context, dataset: str, R: int, seeds: list[int], identity: str) -> list[Trained]:
    """Every seed of a model's head in one group (study.training.group); the members with rows of
    another length than the first's (a few-shot draw short of a label) in groups of their own."""
    from study.training.group import fit_group

    table, labels, rows, (vx, vy), draws = rows_of(ctx, dataset, R, seeds)
    for seed, draw in zip(seeds, draws):
        if draw is not None:
            write_json_atomic(store.model_dir(ctx, dataset, R, seed) / "draw.json", draw)
    out: dict[int, Trained] = {}
    for n in dict.fromkeys(len(r) for r in rows):
        members = [i for i, r in enumerate(rows) if len(r) == n]
        group = [seeds[i] for i in members]
        heads = [new_head(ctx.preset.train, table.shape[-1], seed) for seed in group]
        trained = fit_group(heads, group, table, labels, [rows[i] for i in members], vx, vy, Schedule.of(ctx.preset.train),
                            group_checkpoint(ctx, dataset, R, group), log=ctx.echo,
                            names=[_title(dataset, R, s) for s in group], identity=identity)
        out |= {seed: (head, None, history) for seed, (head, history) in zip(group, trained)}
    return [out[seed] for seed in seeds]


def group_checkpoint(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Path:
    """Where a group of heads keeps its state between epochs (beside its members' folders)."""
    return store.model_dir(ctx, dataset, R, seeds[0]).parent / f"checkpoint-seeds{'-'.join(map(str, seeds))}.npz"


def _each(trainer):
    """A trainer of one seed as a trainer of several: each in turn, each resuming from its own checkpoint."""
    return lambda ctx, dataset, R, seeds, identity: [trainer(ctx, dataset, R, seed, store.model_dir(ctx, dataset, R, seed))
                                                     for seed in seeds]


def _title(dataset: str, R: int, seed: int) -> str:
    return f"{dataset}@{R} seed {seed}"


def _finetune(ctx: Context, dataset: str, R: int, seed: int, workdir: Path) -> Trained:
    """The image-level mode: block 5 and a head fine-tuned on images (study.training.finetune)."""
    from study.training import finetune
    from study.network import weights

    backbone = weights.imagenet_backbone(weights.prepared(ctx))
    head = new_head(ctx.preset.train, backbone.features_dim, seed)
    source = open_builder(ctx, dataset).as_data_source()
    model, history = finetune.finetune(Classifier(backbone, head), source["train"], source["validation"], R,
                                       ctx.preset.train, seed, workdir, ctx.echo)
    return model.head, Block5.of(model.backbone), history


# Each kind of model (study.core.names.Model.kind; "image-level" for the preset mode that
# fine-tunes on images): what its unit depends on, and how its seeds are trained: heads on
# features all seeds together (train_heads), models with a backbone part one seed at a time.
KINDS: dict[str, tuple] = {
    "single": (_single_spec, functools.partial(train_heads, _single_rows)),
    "augmented": (_augmented_spec, functools.partial(train_heads, _single_rows)),
    "multi-source": (_combined_spec, functools.partial(train_heads, _combined_rows)),
    "few-shot": (_combined_spec, functools.partial(train_heads, _combined_rows)),
    "ablation": (_ablation_spec, functools.partial(train_heads, _ablation_rows)),
    "adapted": (_adapted_spec, train_adapted),
    "hand crop": (_view_spec, functools.partial(train_heads, _view_rows)),
    "landmarks": (_view_spec, functools.partial(train_heads, _view_rows)),
    "both views": (_view_spec, functools.partial(train_heads, _view_rows)),
    "fine-tuned": (_block5_spec, _each(train_block5)),
    "image-level": (_image_level_spec, _each(_finetune)),
}


def kind(ctx: Context, dataset: str) -> str:
    return "image-level" if ctx.preset.train.finetune else parse(dataset).kind


def unit_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Everything a trained model depends on: its config and the fingerprints of its inputs."""
    return KINDS[kind(ctx, dataset)][0](ctx, dataset, R, seed)


def run_stage(ctx: Context) -> None:
    """Train every model of the plan that is not done (or whose files are damaged): the seeds of
    a model that are to be trained, together where its kind allows (KINDS)."""
    for name in ctx.plan.skipped:
        ctx.echo(f"{name}: skipped, its datasets share no label")
    groups: dict[tuple[str, int], list[int]] = {}
    for dataset, R, seed in ctx.plan.model_seeds:
        groups.setdefault((dataset, R), []).append(seed)
    for (dataset, R), all_seeds in groups.items():  # in the plan's order: a model's inputs are trained before it
        members = []
        for seed in all_seeds:
            d = store.model_dir(ctx, dataset, R, seed)
            spec = unit_spec(ctx, dataset, R, seed)
            if is_done(d / "unit.json", spec, force=ctx.force):
                continue
            if (d / "unit.json").exists():  # stale (with --force) or damaged: start over
                shutil.rmtree(d)
            d.mkdir(parents=True, exist_ok=True)
            members.append((seed, spec))
        if not members:
            continue
        seeds = [seed for seed, _ in members]
        identity = hashlib.sha256(json.dumps([spec for _, spec in members], sort_keys=True).encode()).hexdigest()
        t0 = time.perf_counter()
        trained = KINDS[kind(ctx, dataset)][1](ctx, dataset, R, seeds, identity)
        seconds = round(time.perf_counter() - t0, 2)
        for (seed, spec), (model, block5, history) in zip(members, trained):
            _save(ctx, dataset, R, seed, spec, model, block5, history, seconds, seeds)
        for seed in seeds:
            (store.model_dir(ctx, dataset, R, seed) / "checkpoint.npz").unlink(missing_ok=True)
        for ckpt in store.model_dir(ctx, dataset, R, seeds[0]).parent.glob("checkpoint-seeds*.npz"):
            ckpt.unlink()


def _save(ctx: Context, dataset: str, R: int, seed: int, spec: dict, model, block5, history: list[dict],
          seconds: float, trained_with: list[int]) -> None:
    """A trained model's files and its marker."""
    d = store.model_dir(ctx, dataset, R, seed)
    name = _title(dataset, R, seed)
    extra = {}
    if block5 is not None:  # a fine-tuned block 5 is saved beside the head; the backbone is named by its sha256
        from study.network import weights

        layers = block5.arrays()
        save_npz(d / "block5.npz", {f"{p}_{i}": a for i, ka in layers.items() for p, a in zip(("kernel", "bias"), ka)})
        tuned = weights.with_layers(weights.prepared(ctx), layers, f"block 5 fine-tuned ({dataset}@{R} seed {seed})")
        extra["backbone_sha256"] = tuned.sha256()
    save_npz(d / "head.npz", head_arrays(model))
    best = min(history, key=lambda h: h["val_loss"])
    write_json_atomic(d / "history.json", {"model": name, "history": history, "best_epoch": best["epoch"]})
    plot_curves(history, d / "curves.png", title=name)
    files = [d / "head.npz", d / "history.json", d / "curves.png"] + ([d / "block5.npz"] if block5 is not None else [])
    files += [d / f for f in ("draw.json", "pseudo.json") if (d / f).is_file()]
    mark_done(d / "unit.json", spec, files, epochs=len(history), best_epoch=best["epoch"],
              val_accuracy=best["val_accuracy"], seconds=seconds, trained_with_seeds=trained_with, **extra)
    ctx.echo(f"trained {name}: {len(history)} epochs, best {best['epoch']} "
             f"(validation accuracy {best['val_accuracy']:.3f})")
