"""The rows each kind of head learns from: cached features read through the store, as one table.

A group of heads (study.training.group.fit_group) trains on `Rows`: the table of rows (V x N x
D: the rows and their views), their labels, each member's row indices, the validation rows and
each member's draw (a few-shot model's target images, saved beside it). No image is read:
every row is a features unit's (study.core.store).
"""

from __future__ import annotations

import numpy as np

from study.core import store
from study.core.context import Context
from study.core.errors import StaleResultError
from study.core.labels import CANONICAL
from study.core.names import parse
from study.core.plan import Unit
from study.core.splits import spread_draw
from study.datasets import open_builder

# Rows of a group of heads (study.training.group.fit_group): the table of rows (V x N x D, the rows
# and their views), their labels, each member's row indices, the validation rows, each member's draw.
Rows = tuple[np.ndarray, np.ndarray, list[np.ndarray], tuple[np.ndarray, np.ndarray], list[dict | None]]


def _features(ctx: Context, u: Unit) -> np.ndarray:
    return store.load_features(ctx, u)[0]


def single(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
    """A single dataset, with its augmented (or flipped) views if any: one table for every seed."""
    m = parse(dataset)
    base = m.sources[0]
    tx, ty, _ = store.load_features(ctx, Unit(base, "train", R, R))
    val = store.load_features(ctx, Unit(base, "validation", R, R))[:2]
    views = [_features(ctx, Unit(base, "train", R, R, view=v)) for v in range(1, m.views + 1)]
    if ctx.preset.train.flip and not m.views:
        views.append(_features(ctx, Unit(base, "train", R, R, flip=True)))
    return np.stack([tx, *views]), ty, [np.arange(len(ty))] * len(seeds), val, [None] * len(seeds)


def view(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
    """`<dataset>/hand`, `<dataset>/landmarks[/aug<K>]` and `<dataset>/hand+landmarks`: the
    features of the images' hand crops, their landmark vectors (and augmented views of them),
    or both side by side (study.core.store.load_features). A landmark model learns from the images
    where a hand was found only (the others have no landmarks; scoring counts them,
    study.stages.evaluate); the others from every image (a crop without a hand is the whole image)."""
    m = parse(dataset)
    base = m.sources[0]
    tx, ty, _ = store.load_features(ctx, Unit(base, "train", R, R, hand=m.input))
    vx, vy, _ = store.load_features(ctx, Unit(base, "validation", R, R, hand=m.input))
    views = [_features(ctx, Unit.landmarks(base, "train", v)) for v in range(1, m.landmark_views + 1)]
    table = np.stack([tx, *views])
    if m.input == "landmarks":
        tk, vk = store.load_found(ctx, base, "train"), store.load_found(ctx, base, "validation")
        table, ty, vx, vy = table[:, tk], ty[tk], vx[vk], vy[vk]
    return table, ty, [np.arange(len(ty))] * len(seeds), (vx, vy), [None] * len(seeds)


def _shared(ctx: Context, dataset: str, split: str, R: int, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A split's cached features, only the rows whose label is in `classes`."""
    x, y, _ = store.load_features(ctx, Unit(dataset, split, R, R))
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
        x, y, _ = store.load_features(ctx, Unit(m.target, "train", R, R))
        index = read_index(open_builder(ctx, m.target))["train"]
        if not np.array_equal(index["label"], y):
            raise StaleResultError(
                f"{m.target}/train: cached features and the prepared dataset disagree; "
                f"run `{store.command(ctx, 'features')} --force`"
            )
        eligible = np.flatnonzero(np.isin(y, classes))
        picked = eligible[spread_draw(y[eligible], index["frame"][eligible], m.k, seed)]
        train.append((x[picked], y[picked]))
        per_label = {CANONICAL[c]: int((y[picked] == c).sum()) for c in classes}
        draw = {
            "target": m.target,
            "k": m.k,
            "seed": seed,
            "images": len(picked),
            "per_label": per_label,
            "short": {c: n for c, n in per_label.items() if n < m.k},  # labels with fewer than k images
            "files": [str(index["file"][i]) for i in picked],
            "frames": [int(index["frame"][i]) for i in picked],
        }
    return _cat(train), _cat(val), draw


def _cat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])


def combined(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
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


def ablation(ctx: Context, dataset: str, R: int, seeds: list[int]) -> Rows:
    """The leakage ablation: the training part of the randomly dealt splits."""
    parts, _ = store.random_split(ctx, dataset, R)
    (tx, ty), val = parts["train"], parts["validation"]
    return tx[None], ty, [np.arange(len(ty))] * len(seeds), val, [None] * len(seeds)


def fixed(
    table: np.ndarray, labels: np.ndarray, rows: list[np.ndarray], val: tuple[np.ndarray, np.ndarray], seeds: list[int]
):
    """Rows already computed (an adapted model's), as a rows function of the same signature."""
    return lambda *_: (table, labels, rows, val, [None] * len(seeds))
