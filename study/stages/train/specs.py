"""What each kind of model depends on: its config and the fingerprints of its inputs.

A model's spec is the fingerprinted content of its unit (study.core.units): a model whose
spec changed is stale, one whose spec is the same and whose files are intact is done.
Inputs are named by the fingerprints of the features units (study.core.store) they read.
"""

from __future__ import annotations

import dataclasses

from study.core import store
from study.core.context import Context
from study.core.names import RANDOM, parse
from study.core.plan import Unit

# Bump when training changes what it produces, so that existing heads count as stale.
# 2: the kept parameters are a copy of the best epoch's (1 kept the last epoch's by aliasing).
# 3: heads trained with their model's other seeds in one program (study.training.group): the
#    same heads to float rounding, but not the same bytes.
TRAIN_VERSION = 3


def _spec(kind: str, dataset: str, R: int, seed: int, **inputs) -> dict:
    return {"kind": kind, "version": TRAIN_VERSION, "dataset": dataset, "R": R, "seed": seed, **inputs}


def _features(ctx: Context, dataset: str, R: int, splits=("train", "validation")) -> dict[str, str]:
    """The fingerprints of a dataset's features at R, by split."""
    return {s: store.features_fingerprint(ctx, Unit(dataset, s, R, R)) for s in splits}


def _train(ctx: Context) -> dict:
    return dataclasses.asdict(ctx.preset.train)


def image_level(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Trained on images: its inputs are the weights and the data."""
    return _spec(
        "finetune",
        dataset,
        R,
        seed,
        train=_train(ctx),
        weights=ctx.weights_record["converted_sha256"],
        dataset_fingerprint=ctx.dataset_fingerprint(dataset),
    )


def ablation(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """The leakage ablation: the pooled splits' features, dealt at random."""
    return _spec(
        "train",
        dataset,
        R,
        seed,
        train=_train(ctx),
        features=_features(ctx, dataset.removesuffix(RANDOM), R, store.ABLATION_SPLITS),
        random_split_seed=store.RANDOM_SPLIT_SEED,
    )


def block5(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Block 5 on the block-4 maps, from the baseline model's head."""
    base = parse(dataset).sources[0]
    return _spec(
        "block5",
        dataset,
        R,
        seed,
        block5=dataclasses.asdict(ctx.preset.block5),
        head=ctx.preset.train.head,
        maps=_features(ctx, base, R),
        weights=ctx.weights_record["converted_sha256"],
        baseline=store.model_record(ctx, base, R, seed)["fingerprint"],
    )


def augmented(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """The original features and every augmented view's."""
    m = parse(dataset)
    fps = _features(ctx, m.sources[0], R)
    fps |= {
        f"train_aug{v}": store.features_fingerprint(ctx, Unit(m.sources[0], "train", R, R, view=v))
        for v in range(1, m.views + 1)
    }
    return _spec("train", dataset, R, seed, train=_train(ctx), features=fps)


def combined(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """Multi-source and few-shot: several datasets' features, shared labels."""
    m = parse(dataset)
    fps = {f"{d}/{s}": fp for d in m.sources for s, fp in _features(ctx, d, R).items()}
    if m.target:
        fps[f"{m.target}/train"] = store.features_fingerprint(ctx, Unit(m.target, "train", R, R))
    return _spec("train", dataset, R, seed, train=_train(ctx), features=fps, classes=ctx.plan.classes(dataset))


def adapted(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """The source's features and the target's training features (never its labels); for
    self-training, the source's frozen model it starts from and the labels it may choose."""
    m = parse(dataset)
    cfg = ctx.preset.adapt
    fps = _features(ctx, m.sources[0], R)
    fps[f"{m.target}/train"] = store.features_fingerprint(ctx, Unit(m.target, "train", R, R))
    extra = {"coral_shrink": cfg.coral_shrink} if m.adapt == "coral" else {}
    if m.adapt == "self":
        extra = {
            "rounds": cfg.rounds,
            "confidence": cfg.confidence,
            "classes": ctx.plan.shared_classes(m.sources[0], m.target),
            "baseline": store.model_record(ctx, m.sources[0], R, seed)["fingerprint"],
        }
    return _spec("train", dataset, R, seed, train=_train(ctx), features=fps, adapt={"method": m.adapt, **extra})


def single(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """One dataset's features (and their mirrored copy where the preset flips)."""
    fps = _features(ctx, dataset, R)
    if ctx.preset.train.flip:
        fps["train_flip"] = store.features_fingerprint(ctx, Unit(dataset, "train", R, R, flip=True))
    return _spec("train", dataset, R, seed, train=_train(ctx), features=fps)


def view(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """A head on another view of a dataset's images (hand crops, landmark vectors, both; with
    augmented landmark views)."""
    m = parse(dataset)
    fps = {
        s: store.features_fingerprint(ctx, Unit(m.sources[0], s, R, R, hand=m.input)) for s in ("train", "validation")
    }
    fps |= {
        f"train_aug{v}": store.features_fingerprint(ctx, Unit.landmarks(m.sources[0], "train", v))
        for v in range(1, m.landmark_views + 1)
    }
    return _spec("train", dataset, R, seed, train=_train(ctx), features=fps)
