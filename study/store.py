"""Where every unit of the study lives on disk, what it holds, and how to read it back.

The stages meet here, never in each other's modules: `features` writes what `train` and
`evaluate` read through this module; `train` writes the heads (and fine-tuned blocks) that
`evaluate` and `score` read. This module knows paths, the specs that identify cached
features, manifests (study.units) and array loading; building modules from the arrays is
study.model's, running stages is each stage's. A unit another stage needs but that is
missing or damaged is an error naming the file and the command that makes it.

    <cache-dir>/features/<weights sha>/<dataset fingerprint>/<split>/R<R>_r<r>[_flip]/
        feats.npy (N x 512 float32), labels.npy (N int64), unit.json
    <out>/models/<dataset>@<R>/seed<k>/
        head.npz, history.json, curves.png, unit.json [, block5.npz when fine-tuned]
    <out>/eval/<dataset>@<R>/seed<k>/<eval dataset>.<split>.r<r>.json (+ .txt)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from study.context import Context
from study.datasets.splits import random_deal
from study.names import RANDOM, model_names
from study.units import MissingArtefact, read_marker, require

# Bump when the feature computation changes, so cached features are recomputed.
FEATURES_VERSION = 1
# Seed of the leakage ablation's random split (the same for every model seed).
RANDOM_SPLIT_SEED = 0
ABLATION_SPLITS = ("train", "validation", "test")


def command(ctx: Context, stage: str) -> str:
    """The command that runs `stage` for this context's preset and results folder."""
    out = "" if ctx.out_dir == Path(f"results/{ctx.preset.name}") else f" --out {ctx.out_dir}"
    return f"python -m study.run {stage} --preset {ctx.preset.name}{out}"


# --- features ------------------------------------------------------------------------------


def features_dir(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None) -> Path:
    """Cache folder of a features unit; `weights` is the backbone's sha256 (default: the prepared one)."""
    sha = (weights or ctx.weights_record["converted_sha256"])[:16]
    return ctx.cache_dir / "features" / sha / ctx.dataset_fingerprint(dataset) / split / f"R{R}_r{r}{'_flip' if flip else ''}"


def features_spec(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None) -> dict:
    """Everything a features unit depends on."""
    return {
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


def features_fingerprint(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None) -> str:
    """The fingerprint of a computed features unit; MissingArtefact if it is missing or damaged."""
    d = features_dir(ctx, dataset, split, R, r, flip, weights)
    rec = require(d / "unit.json", features_spec(ctx, dataset, split, R, r, flip, weights),
                  f"features of {dataset}/{split} at R={R}, r={r}", command(ctx, "features"))
    return rec["fingerprint"]


def load_features(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False,
                  weights: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Cached features (N x D) and labels (N) of a unit, and its fingerprint."""
    fp = features_fingerprint(ctx, dataset, split, R, r, flip, weights)
    d = features_dir(ctx, dataset, split, R, r, flip, weights)
    return np.load(d / "feats.npy"), np.load(d / "labels.npy"), fp


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
    p = ctx.preset
    names = model_names(trainable_labels(ctx), multi_source=p.multi_source, few_shot=p.few_shot, ablation=p.ablation,
                        finetune=p.train.finetune)
    return [(name, R, seed) for R in p.train_resolutions for name in names for seed in p.seeds]


def trainable_labels(ctx: Context) -> dict[str, set[str]]:
    """The labels of each dataset a model can be trained on (it has train and validation splits)."""
    return {n: set(ctx.splits(n)["train"]["per_class"]) for n in ctx.dataset_names
            if {"train", "validation"} <= set(ctx.splits(n))}


def model_dir(ctx: Context, dataset: str, R: int, seed: int) -> Path:
    return ctx.out_dir / "models" / f"{dataset}@{R}" / f"seed{seed}"


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
    return root / f"{train_ds}@{R}" / f"seed{seed}" / f"{eval_ds}.{split}.r{r}.json"


def eval_name(eval_ds: str, split: str) -> str:
    """The table's eval_dataset: the dataset for its test split, dataset:split otherwise."""
    return eval_ds if split == "test" else f"{eval_ds}:{split}"
