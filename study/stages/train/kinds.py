"""How each kind of model is trained, and the table of kinds (`KINDS`).

Heads on cached features train all of a model's seeds together in one compiled program
(`train_heads`, study.training.group); models with a backbone part train one seed at a time
(`_each`): `<dataset>/ft5` fine-tunes block 5 on cached block-4 maps, the image-level preset
mode fine-tunes on images. Adapted models (study.training.adapt) see the target's unlabelled
training features only. A trainer returns, per seed, (head, fine-tuned block 5 or None, history).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from flax import nnx

from study.core import store
from study.core.context import Context
from study.core.files import write_json_atomic
from study.core.labels import CANONICAL
from study.core.names import parse
from study.core.plan import Unit
from study.datasets import open_builder
from study.network.model import Block5, Classifier, head_from_arrays
from study.stages.train import rows, specs
from study.training.fit import Schedule, fit, fixed_batches
from study.training.heads import loss_acc, new_head

# A trainer's result for one seed: (head, fine-tuned block 5 or None, history).
Trained = tuple[nnx.Module, "Block5 | None", list[dict]]


def title(dataset: str, R: int, seed: int) -> str:
    """A model's name in messages and on its curves."""
    return f"{dataset}@{R} seed {seed}"


def train_heads(rows_of, ctx: Context, dataset: str, R: int, seeds: list[int], identity: str) -> list[Trained]:
    """Every seed of a model's head in one group (study.training.group); the members with rows of
    another length than the first's (a few-shot draw short of a label) in groups of their own."""
    from study.training.group import fit_group

    table, labels, member_rows, (vx, vy), draws = rows_of(ctx, dataset, R, seeds)
    for seed, draw in zip(seeds, draws):
        if draw is not None:
            write_json_atomic(store.model_files(ctx, dataset, R, seed).draw, draw)
    out: dict[int, Trained] = {}
    for n in dict.fromkeys(len(r) for r in member_rows):
        members = [i for i, r in enumerate(member_rows) if len(r) == n]
        group = [seeds[i] for i in members]
        heads = [new_head(ctx.preset.train, table.shape[-1], seed) for seed in group]
        trained = fit_group(
            heads,
            group,
            table,
            labels,
            [member_rows[i] for i in members],
            vx,
            vy,
            Schedule.of(ctx.preset.train),
            group_checkpoint(ctx, dataset, R, group),
            log=ctx.echo,
            names=[title(dataset, R, s) for s in group],
            identity=identity,
        )
        out |= {seed: (head, None, history) for seed, (head, history) in zip(group, trained)}
    return [out[seed] for seed in seeds]


def group_checkpoint(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Path:
    """Where a group of heads keeps its state between epochs (beside its members' folders)."""
    return store.model_files(ctx, dataset, R, seeds[0]).group_checkpoint(seeds)


def train_adapted(ctx: Context, dataset: str, R: int, seeds: list[int], identity: str) -> list[Trained]:
    """`<source>+<method>(<target>)`: heads on the source's labelled features and the target's
    unlabelled training features (study.training.adapt); the target's labels are never read.
    Validation is the source's, as for few-shot models. Budget: heads only, seconds each."""
    from study.training import adapt

    m = parse(dataset)
    cfg, src = ctx.preset.adapt, m.sources[0]
    tx, ty, _ = store.load_features(ctx, Unit(src, "train", R, R))
    vx, vy = store.load_features(ctx, Unit(src, "validation", R, R))[:2]
    ux = store.load_features(ctx, Unit(m.target, "train", R, R))[0]
    every = [np.arange(len(ty))] * len(seeds)
    if m.adapt == "std":
        s, t = adapt.Standardise.of(tx), adapt.Standardise.of(ux)
        trained = train_heads(rows.fixed(s(tx)[None], ty, every, (s(vx), vy), seeds), ctx, dataset, R, seeds, identity)
        for head, _, _ in trained:  # scored on the target: its own standardisation, in the head
            adapt.fold(head, t)
        return trained
    if m.adapt == "coral":
        affine = adapt.coral(tx, ux, cfg.coral_shrink)
        return train_heads(
            rows.fixed(adapt.apply(tx, affine)[None], ty, every, (adapt.apply(vx, affine), vy), seeds),
            ctx,
            dataset,
            R,
            seeds,
            identity,
        )
    heads = {
        seed: head_from_arrays(
            ctx.preset.train.head, store.head_arrays(ctx, src, R, seed), tx.shape[1], len(CANONICAL), seed
        )
        for seed in seeds
    }

    def train_round(k: int, table: np.ndarray, labels: np.ndarray, member_rows: list[np.ndarray]) -> list[Trained]:
        trained = train_heads(
            rows.fixed(table, labels, member_rows, (vx, vy), seeds), ctx, dataset, R, seeds, f"{identity} round {k}"
        )
        group_checkpoint(ctx, dataset, R, seeds).unlink(missing_ok=True)  # a round done is not resumed
        return trained

    trained, rounds = adapt.self_train(
        heads,
        tx,
        ty,
        ux,
        ctx.plan.shared_classes(src, m.target),
        cfg.rounds,
        cfg.confidence,
        train_round,
        ctx.echo,
        f"{dataset}@{R}",
    )
    for seed in seeds:
        write_json_atomic(
            store.model_files(ctx, dataset, R, seed).pseudo,
            {"target": m.target, "confidence": cfg.confidence, "rounds": rounds[seed]},
        )
    return trained


def train_block5(ctx: Context, dataset: str, R: int, seed: int, workdir: Path) -> Trained:
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
    head = head_from_arrays(
        ctx.preset.train.head, store.head_arrays(ctx, base, R, seed), block5.features_dim, len(CANONICAL), seed
    )
    tx, ty = store.load_maps(ctx, Unit(base, "train", R, R))
    vx, vy = store.load_maps(ctx, Unit(base, "validation", R, R))
    model = Classifier(block5, head)
    model, history = fit(
        model,
        len(ty),
        fixed_batches(tx, ty, batch=cfg.batch_size),
        lambda m: loss_acc(m, vx, vy),
        Schedule.of(cfg),
        seed,
        workdir,
        log=ctx.echo,
        name=f"{dataset}/ft5@{R} seed {seed}",
    )
    return model.head, model.backbone, history


def _finetune(ctx: Context, dataset: str, R: int, seed: int, workdir: Path) -> Trained:
    """The image-level mode: block 5 and a head fine-tuned on images (study.training.finetune)."""
    from study.network import weights
    from study.training import finetune

    backbone = weights.imagenet_backbone(weights.prepared(ctx))
    head = new_head(ctx.preset.train, backbone.features_dim, seed)
    source = open_builder(ctx, dataset).as_data_source()
    model, history = finetune.finetune(
        Classifier(backbone, head), source["train"], source["validation"], R, ctx.preset.train, seed, workdir, ctx.echo
    )
    return model.head, Block5.of(model.backbone), history


def _each(trainer):
    """A trainer of one seed as a trainer of several: each in turn, each resuming from its own checkpoint."""

    def train(ctx: Context, dataset: str, R: int, seeds: list[int], identity: str) -> list[Trained]:
        return [trainer(ctx, dataset, R, seed, store.model_files(ctx, dataset, R, seed).root) for seed in seeds]

    return train


# Each kind of model (study.core.names.Model.kind; "image-level" for the preset mode that
# fine-tunes on images): what its unit depends on (specs), and how its seeds are trained.
KINDS: dict[str, tuple] = {
    "single": (specs.single, functools.partial(train_heads, rows.single)),
    "augmented": (specs.augmented, functools.partial(train_heads, rows.single)),
    "multi-source": (specs.combined, functools.partial(train_heads, rows.combined)),
    "few-shot": (specs.combined, functools.partial(train_heads, rows.combined)),
    "ablation": (specs.ablation, functools.partial(train_heads, rows.ablation)),
    "adapted": (specs.adapted, train_adapted),
    "hand crop": (specs.view, functools.partial(train_heads, rows.view)),
    "landmarks": (specs.view, functools.partial(train_heads, rows.view)),
    "both views": (specs.view, functools.partial(train_heads, rows.view)),
    "fine-tuned": (specs.block5, _each(train_block5)),
    "image-level": (specs.image_level, _each(_finetune)),
}


def kind(ctx: Context, dataset: str) -> str:
    """A model's kind in KINDS."""
    return "image-level" if ctx.preset.train.finetune else parse(dataset).kind


def unit_spec(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Everything a trained model depends on: its config and the fingerprints of its inputs."""
    return KINDS[kind(ctx, dataset)][0](ctx, dataset, R, seed)
