"""Where every unit of the study lives on disk, what it holds, and how to read it back.

The stages meet here, never in each other's modules: `features` writes what `train` and
`evaluate` read through this module; `train` writes the heads (and fine-tuned blocks) that
`evaluate` and `score` read. This module knows paths, the specs that identify cached
features, manifests (study.units) and array loading; building modules from the arrays is
study.model's, running stages is each stage's. A unit another stage needs but that is
missing or damaged is an error naming the file and the command that makes it.

    <cache-dir>/features/<weights sha>/<dataset fingerprint>/<split>/R<R>_r<r>[_flip][_aug<v>]/
        feats.npy (N x 512 float32), labels.npy (N int64), unit.json
        [, maps.npy (N x R/16 x R/16 x 512 float32): block-4 maps, at block-5 resolutions]
    <out>/models/<model folder (study.names.folder)>/seed<k>/
        head.npz, history.json, curves.png, unit.json [, block5.npz when fine-tuned]
    <out>/eval/<dataset>@<R>/seed<k>/<eval dataset>.<split>.r<r>.json (+ .txt)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import numpy as np

from study.context import Context
from study.datasets.splits import random_deal
from study.names import FT5, RANDOM, folder, parse, preset_models
from study.units import MissingArtefact, read_marker, require

# Bump when the feature computation changes, so cached features are recomputed.
FEATURES_VERSION = 2  # 2: convolutions by Winograd on CPU (study.conv)
# Seed of the leakage ablation's random split (the same for every model seed).
RANDOM_SPLIT_SEED = 0
# Seed of the augmented views (study.augment): view v of image i is drawn from (seed, v, i).
AUGMENT_SEED = 0
ABLATION_SPLITS = ("train", "validation", "test")


def command(ctx: Context, stage: str) -> str:
    """The command that runs `stage` for this context's preset and results folder."""
    out = "" if ctx.out_dir == Path(f"results/{ctx.preset.name}") else f" --out {ctx.out_dir}"
    return f"python -m study.run {stage} --preset {ctx.preset.name}{out}"


# --- features ------------------------------------------------------------------------------


class Unit(NamedTuple):
    """A features unit: a dataset split's images at model resolution R, degraded to r,
    optionally mirrored or an augmented view (1, 2, ...), through the prepared backbone or a
    fine-tuned model's (`model`: train dataset, R, seed, backbone sha256)."""

    dataset: str
    split: str
    R: int
    r: int
    flip: bool = False
    view: int = 0
    model: tuple | None = None

    @property
    def backbone(self) -> str | None:
        return self.model[3] if self.model else None

    def __str__(self) -> str:
        extra = " flip" if self.flip else f" augmented view {self.view}" if self.view else ""
        return f"{self.dataset}/{self.split} R={self.R} r={self.r}{extra}" + (f" ({self.model[0]} seed {self.model[2]})" if self.model else "")


def holds_maps(ctx: Context, R: int, flip: bool = False, view: int = 0, weights: str | None = None) -> bool:
    """Whether a features unit also keeps its block-4 maps: the prepared backbone's, at the
    resolutions where block 5 is fine-tuned (study.train.train_block5), unaugmented."""
    return R in ctx.preset.block5.resolutions and not flip and not view and weights is None


def features_dir(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None,
                 view: int = 0) -> Path:
    """Cache folder of a features unit; `weights` is the backbone's sha256 (default: the
    prepared one); `view` > 0 is an augmented view of the images (study.augment)."""
    sha = (weights or ctx.weights_record["converted_sha256"])[:16]
    name = f"R{R}_r{r}{'_flip' if flip else ''}{f'_aug{view}' if view else ''}"
    return ctx.cache_dir / "features" / sha / ctx.dataset_fingerprint(dataset) / split / name


def features_spec(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None,
                  view: int = 0) -> dict:
    """Everything a features unit depends on. The keys for block-4 maps and augmented views
    appear only in the units that have them, so that units cached before they existed stay valid."""
    spec = {
        "kind": "features",
        "version": FEATURES_VERSION,
        "weights": weights or ctx.weights_record["converted_sha256"],
        "dataset": dataset,
        "dataset_fingerprint": ctx.dataset_fingerprint(dataset),
        "split": split,
        "images": ctx.splits(dataset)[split]["images"],
        "R": R,
        "r": r,
        "flip": flip,
    }
    if holds_maps(ctx, R, flip, view, weights):
        spec["block4_maps"] = True
    if view:
        spec["augment"] = dataclasses.asdict(ctx.preset.augment) | {"view": view, "seed": AUGMENT_SEED}
    return spec


def features_fingerprint(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None,
                         view: int = 0) -> str:
    """The fingerprint of a computed features unit; MissingArtefact if it is missing or damaged."""
    d = features_dir(ctx, dataset, split, R, r, flip, weights, view)
    what = f"features of {dataset}/{split} at R={R}, r={r}" + (f", augmented view {view}" if view else "")
    rec = require(d / "unit.json", features_spec(ctx, dataset, split, R, r, flip, weights, view), what,
                  command(ctx, "features"))
    return rec["fingerprint"]


def load_features(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False,
                  weights: str | None = None, view: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Cached features (N x D) and labels (N) of a unit, and its fingerprint."""
    fp = features_fingerprint(ctx, dataset, split, R, r, flip, weights, view)
    d = features_dir(ctx, dataset, split, R, r, flip, weights, view)
    return np.load(d / "feats.npy"), np.load(d / "labels.npy"), fp


def load_maps(ctx: Context, dataset: str, split: str, R: int, r: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The block-4 maps (N x R/16 x R/16 x 512, memory-mapped) and labels of a features unit
    at a block-5 resolution (see `holds_maps`)."""
    r = R if r is None else r
    if not holds_maps(ctx, R):
        raise ValueError(f"no block-4 maps at R={R}: the preset fine-tunes block 5 at {ctx.preset.block5.resolutions}")
    features_fingerprint(ctx, dataset, split, R, r)  # there, intact and current, or MissingArtefact
    d = features_dir(ctx, dataset, split, R, r)
    return np.load(d / "maps.npy", mmap_mode="r"), np.load(d / "labels.npy")


def random_split(ctx: Context, name: str, R: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """The leakage ablation's data: the dataset's train, validation and test features pooled
    and dealt at random (study.datasets.splits.random_deal) into splits of the same sizes;
    and the fingerprints of the features it was dealt from."""
    base = name.removesuffix(RANDOM)
    parts = {s: load_features(ctx, base, s, R, R) for s in ABLATION_SPLITS}
    x = np.concatenate([parts[s][0] for s in parts])
    y = np.concatenate([parts[s][1] for s in parts])
    dealt = random_deal([len(parts[s][1]) for s in parts], RANDOM_SPLIT_SEED)
    return {s: (x[idx], y[idx]) for s, idx in zip(parts, dealt)}, {s: parts[s][2] for s in parts}


# --- models ---------------------------------------------------------------------------------


def models(ctx: Context) -> list[tuple[str, int, int]]:
    """(name, R, seed) of every model of the preset (names: study.names)."""
    return [(name, R, seed) for name, R in preset_models(ctx.preset, trainable_labels(ctx)) for seed in ctx.preset.seeds]


def scorable(ctx: Context, echo=None) -> list[tuple[str, int, int]]:
    """The models `score` scores a folder with: all but the few-shot ones and the ablation,
    which belong to the study's own datasets; a fine-tuned model only where its block 5 is
    there (the cpu preset commits heads, 0.55 MB each, but not fine-tuned blocks, 28 MB each).
    `echo` gets a line per model left out for want of its block."""
    out, absent = [], []
    for name, R, seed in models(ctx):
        m = parse(name)
        if m.kind in ("few-shot", "ablation"):
            continue
        if m.remedy == FT5 and not (model_dir(ctx, name, R, seed) / "block5.npz").exists():
            absent.append(f"{name}@{R} seed {seed}")
            continue
        out.append((name, R, seed))
    if absent and echo:
        echo(f"not scored, their fine-tuned block 5 is not here (`{command(ctx, 'train')}` makes it): {', '.join(absent)}")
    return out


def trainable_labels(ctx: Context) -> dict[str, set[str]]:
    """The labels of each dataset a model can be trained on (it has train and validation splits)."""
    return {n: set(ctx.splits(n)["train"]["per_class"]) for n in ctx.dataset_names
            if {"train", "validation"} <= set(ctx.splits(n))}


def model_dir(ctx: Context, dataset: str, R: int, seed: int) -> Path:
    return ctx.out_dir / "models" / folder(dataset, R) / f"seed{seed}"


def model_record(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """A trained model's marker, its files checked; MissingArtefact naming the first missing one."""
    marker = model_dir(ctx, dataset, R, seed) / "unit.json"
    what, cmd = f"model {dataset}@{R} seed {seed}", command(ctx, "train")
    if not marker.is_file():
        raise MissingArtefact(what, marker, cmd)
    rec = read_marker(marker)
    return require(marker, rec.get("spec", {}), what, cmd)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def head_arrays(ctx: Context, dataset: str, R: int, seed: int) -> dict[str, np.ndarray]:
    """A trained head's saved arrays (study.model.head_from_arrays builds the head)."""
    model_record(ctx, dataset, R, seed)
    return _arrays(model_dir(ctx, dataset, R, seed) / "head.npz")


def block5_arrays(ctx: Context, dataset: str, R: int, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """A fine-tuned model's block 5, as {convolution index: (kernel, bias)}."""
    model_record(ctx, dataset, R, seed)
    z = _arrays(model_dir(ctx, dataset, R, seed) / "block5.npz")
    return {int(k.removeprefix("kernel_")): (z[k], z["bias_" + k.removeprefix("kernel_")]) for k in z if k.startswith("kernel_")}


# --- evaluations ----------------------------------------------------------------------------


def eval_path(root: Path, train_ds: str, R: int, seed: int, eval_ds: str, split: str, r: int) -> Path:
    return root / folder(train_ds, R) / f"seed{seed}" / f"{eval_ds}.{split}.r{r}.json"


def eval_name(eval_ds: str, split: str) -> str:
    """The table's eval_dataset: the dataset for its test split, dataset:split otherwise."""
    return eval_ds if split == "test" else f"{eval_ds}:{split}"
