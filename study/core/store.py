"""Where every unit of the study lives on disk, what it holds, and how to read it back.

The stages meet here, never in each other's modules: `features` writes what `train` and
`evaluate` read through this module; `train` writes the heads (and fine-tuned blocks) that
`evaluate` and `score` read. This module knows paths, the specs that identify cached
features, manifests (study.core.units) and array loading; building modules from the arrays is
study.network.model's, running stages is each stage's. A unit another stage needs but that is
missing or damaged is an error naming the file and the command that makes it.

    <cache-dir>/features/<weights sha>/<dataset fingerprint>/<split>/R<R>_r<r>[_flip][_aug<v>][_trim<t>][_hand]/
        feats.npy (N x 512 float32), labels.npy (N int64), unit.json
        [, maps.npy (N x R/16 x R/16 x 512 float32): block-4 maps, at block-5 resolutions]
    <cache-dir>/features/landmarks/<hands unit fingerprint>/<dataset fingerprint>/<split>/
        feats.npy (N x 63 float32: study.core.hand.landmark_vectors), labels.npy, found.npy (N bool), unit.json
    <cache-dir>/hands/<models id>/<dataset fingerprint>/<split>/hands.npz, unit.json  (study.hands.landmarks)
    <out>/models/<model folder (study.core.names.folder)>/seed<k>/
        head.npz, history.json, curves.png, unit.json [, block5.npz when fine-tuned]
    <out>/eval/<dataset>@<R>/seed<k>/<eval dataset>.<split>.r<r>.json (+ .txt)
    <out>/table.csv, <out>/separability.csv
    <out>/score/<folder name>/ (dataset.json, features.json, eval/, table.csv)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from study.core.context import Context, default_out
from study.core.files import read_csv, write_csv_atomic
from study.core.hand import MODEL_FILES, augment_landmarks, crop_boxes, landmark_vectors, to_stored
from study.core.splits import random_deal
from study.core.names import FT5, RANDOM, folder, parse
from study.core.plan import Unit
from study.core.units import MissingArtefact, fingerprint, readable_record, require

# Bump when the feature computation changes, so cached features are recomputed.
FEATURES_VERSION = 2  # 2: convolutions by Winograd on CPU (study.network.conv)
# Bump when the landmark classifier's input (study.core.hand.landmark_vectors) changes.
LANDMARK_FEATURES_VERSION = 1
# Bump when what a hands unit computes changes, so that cached landmarks are recomputed.
HANDS_VERSION = 1
# Seed of the leakage ablation's random split (the same for every model seed).
RANDOM_SPLIT_SEED = 0
# Seed of the augmented views (study.datasets.augment): view v of image i is drawn from (seed, v, i).
AUGMENT_SEED = 0
ABLATION_SPLITS = ("train", "validation", "test")


def command(ctx: Context, stage: str) -> str:
    """The command that runs `stage` for this context's preset and results folder."""
    out = "" if ctx.out_dir == default_out(ctx.preset.name) else f" --out {ctx.out_dir}"
    return f"python -m study.run {stage} --preset {ctx.preset.name}{out}"


# --- features ------------------------------------------------------------------------------


def features_dir(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None,
                 view: int = 0, trim: int = 0, hand: str = "") -> Path:
    """Cache folder of a features unit; `weights` is the backbone's sha256 (default: the
    prepared one); `view` > 0 is an augmented view of the images (study.datasets.augment);
    `hand` "crop" the images' hand crops, "landmarks" the landmark vectors (no backbone)."""
    if hand == "landmarks":
        return (ctx.cache_dir / "features" / "landmarks" / hands_fingerprint(ctx, dataset, split)
                / ctx.dataset_fingerprint(dataset) / (f"{split}_aug{view}" if view else split))
    sha = (weights or ctx.weights_record["converted_sha256"])[:16]
    name = (f"R{R}_r{r}{'_flip' if flip else ''}{f'_aug{view}' if view else ''}{f'_trim{trim}' if trim else ''}"
            f"{'_hand' if hand == 'crop' else ''}")
    return ctx.cache_dir / "features" / sha / ctx.dataset_fingerprint(dataset) / split / name


def features_spec(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None,
                  view: int = 0, trim: int = 0, hand: str = "") -> dict:
    """Everything a features unit depends on. The keys for block-4 maps and augmented views
    appear only in the units that have them, so that units cached before they existed stay valid."""
    if hand == "landmarks":
        spec = {"kind": "landmarks", "version": LANDMARK_FEATURES_VERSION, "dataset": dataset,
                "dataset_fingerprint": ctx.dataset_fingerprint(dataset), "split": split,
                "images": ctx.plan.splits(dataset)[split]["images"], "hands": hands_fingerprint(ctx, dataset, split)}
        if view:
            h = ctx.preset.hands
            spec["augment"] = {"rotation": h.landmark_rotation, "stretch": list(h.landmark_stretch), "shear": h.landmark_shear,
                               "view": view, "seed": AUGMENT_SEED}
        return spec
    spec = {
        "kind": "features",
        "version": FEATURES_VERSION,
        "weights": weights or ctx.weights_record["converted_sha256"],
        "dataset": dataset,
        "dataset_fingerprint": ctx.dataset_fingerprint(dataset),
        "split": split,
        "images": ctx.plan.splits(dataset)[split]["images"],
        "R": R,
        "r": r,
        "flip": flip,
    }
    if ctx.plan.holds_maps(R, flip, view, weights, trim, hand):
        spec["block4_maps"] = True
    if view:
        spec["augment"] = dataclasses.asdict(ctx.preset.augment) | {"view": view, "seed": AUGMENT_SEED}
    if trim:
        spec["trim"] = trim
    if hand == "crop":
        spec["crop"] = {"margin": ctx.preset.hands.margin, "hands": hands_fingerprint(ctx, dataset, split)}
    return spec


def features_fingerprint(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None,
                         view: int = 0, trim: int = 0, hand: str = "") -> str:
    """The fingerprint of a computed features unit; MissingArtefact if it is missing or damaged."""
    d = features_dir(ctx, dataset, split, R, r, flip, weights, view, trim, hand)
    what = (f"{'landmark vectors' if hand == 'landmarks' else 'features'} of {dataset}/{split}"
            + ("" if hand == "landmarks" else f" at R={R}, r={r}") + (f", augmented view {view}" if view else "")
            + (f", without a {trim}-pixel border" if trim else "") + (", hand crops" if hand == "crop" else ""))
    rec = require(d / "unit.json", features_spec(ctx, dataset, split, R, r, flip, weights, view, trim, hand), what,
                  command(ctx, "features"))
    return rec["fingerprint"]


def load_features(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False,
                  weights: str | None = None, view: int = 0, trim: int = 0, hand: str = "") -> tuple[np.ndarray, np.ndarray, str]:
    """Cached features (N x D) and labels (N) of a unit, and its fingerprint."""
    fp = features_fingerprint(ctx, dataset, split, R, r, flip, weights, view, trim, hand)
    d = features_dir(ctx, dataset, split, R, r, flip, weights, view, trim, hand)
    return np.load(d / "feats.npy"), np.load(d / "labels.npy"), fp


def view_fingerprint(ctx: Context, dataset: str, split: str, R: int, r: int, view: str, weights: str | None = None) -> str:
    """The fingerprint of the features a model of input `view` (study.core.names.Model.input)
    reads for a split at (R, r): a unit's; for "both", of the crops' and the landmarks' units."""
    if view == "both":
        return fingerprint({"crop": features_fingerprint(ctx, dataset, split, R, r, weights=weights, hand="crop"),
                            "landmarks": features_fingerprint(ctx, dataset, split, 0, 0, hand="landmarks")})
    return features_fingerprint(ctx, dataset, split, R, r, weights=weights, hand=view)


def load_view(ctx: Context, dataset: str, split: str, R: int, r: int, view: str,
              weights: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The features (N x D), labels and fingerprint a model of input `view` reads: the whole
    images', the hand crops', the landmark vectors, or for "both" the crops' features, the
    landmark vector and whether a hand was found (1 or 0), side by side (N x 576)."""
    if view != "both":
        return load_features(ctx, dataset, split, R, r, weights=weights, hand=view)
    x, y, _ = load_features(ctx, dataset, split, R, r, weights=weights, hand="crop")
    lm, ly, _ = load_features(ctx, dataset, split, 0, 0, hand="landmarks")
    if not np.array_equal(y, ly):
        raise MissingArtefact(f"landmark vectors of {dataset}/{split} in the order of its crops",
                              features_dir(ctx, dataset, split, 0, 0, hand="landmarks"), command(ctx, "features") + " --force")
    found = load_found(ctx, dataset, split)[:, None].astype(np.float32)
    return np.concatenate([x, lm, found], axis=1), y, view_fingerprint(ctx, dataset, split, R, r, view, weights)


def load_found(ctx: Context, dataset: str, split: str) -> np.ndarray:
    """Where a split's landmark vectors hold a hand (N bool; the unit of `hand="landmarks"`)."""
    features_fingerprint(ctx, dataset, split, 0, 0, hand="landmarks")
    return np.load(features_dir(ctx, dataset, split, 0, 0, hand="landmarks") / "found.npy")


# --- hand landmarks (the hands stage, study.hands) -----------------------------------------------


def hands_models_id() -> str:
    """Names the detector: the sha256 of its two model files, shortened."""
    return hashlib.sha256("".join(sha for _, sha in MODEL_FILES.values()).encode()).hexdigest()[:16]


def hands_dir(cache_dir: Path, dataset_fingerprint: str, split: str) -> Path:
    return Path(cache_dir) / "hands" / hands_models_id() / dataset_fingerprint / split


def hands_spec(dataset_fingerprint: str, split: str, tries) -> dict:
    return {"dataset_fingerprint": dataset_fingerprint, "split": split, "version": HANDS_VERSION,
            "models": {role: sha for role, (_, sha) in MODEL_FILES.items()}, "tries": [list(t) for t in tries]}


def hands_fingerprint(ctx: Context, dataset: str, split: str) -> str:
    """The fingerprint of a split's cached landmarks; MissingArtefact naming the command that
    makes them if they are missing, damaged or of another configuration."""
    fp = ctx.dataset_fingerprint(dataset)
    rec = require(hands_dir(ctx.cache_dir, fp, split) / "unit.json", hands_spec(fp, split, ctx.preset.hands.tries),
                  f"the hand landmarks of {dataset}/{split}", command(ctx, "hands"))
    return rec["fingerprint"]


HANDS_FIELDS = ("landmarks", "presence", "left", "palm", "tried", "size")


def hands_arrays(directory: Path) -> dict[str, np.ndarray]:
    """A finished hands unit's arrays (study.hands.landmarks says what each holds)."""
    with np.load(Path(directory) / "hands.npz") as z:
        return {f: z[f] for f in HANDS_FIELDS}


def load_hands(ctx: Context, dataset: str, split: str) -> dict[str, np.ndarray]:
    """A prepared split's cached landmarks, checked (`hands_fingerprint`)."""
    hands_fingerprint(ctx, dataset, split)
    return hands_arrays(hands_dir(ctx.cache_dir, ctx.dataset_fingerprint(dataset), split))


def hand_crops(ctx: Context, dataset: str, split: str) -> np.ndarray:
    """Each image's hand crop, normalised to the stored image (study.core.hand.crop_boxes; the
    whole image where no hand was found)."""
    arrays = load_hands(ctx, dataset, split)
    return crop_boxes(to_stored(arrays["landmarks"], arrays["size"]), arrays["tried"] >= 0, ctx.preset.hands.margin)


def landmark_table(ctx: Context, dataset: str, split: str, view: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A split's landmark vectors (study.core.hand.landmark_vectors) and where a hand was found;
    `view` > 0: of augmented view `view` of every hand (study.core.hand.augment_landmarks,
    drawn from (AUGMENT_SEED, view))."""
    arrays = load_hands(ctx, dataset, split)
    points = arrays["landmarks"]
    if view:
        h = ctx.preset.hands
        points = augment_landmarks(points, arrays["size"], np.random.default_rng([AUGMENT_SEED, view]), h.landmark_rotation,
                                   h.landmark_stretch, h.landmark_shear)
    return landmark_vectors(points, arrays["left"], arrays["size"]), arrays["tried"] >= 0


def load_maps(ctx: Context, dataset: str, split: str, R: int, r: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The block-4 maps (N x R/16 x R/16 x 512, memory-mapped) and labels of a features unit
    at a block-5 resolution (see study.core.plan.Plan.holds_maps)."""
    r = R if r is None else r
    if not ctx.plan.holds_maps(R):
        raise ValueError(f"no block-4 maps at R={R}: the preset fine-tunes block 5 at {ctx.preset.block5.resolutions}")
    features_fingerprint(ctx, dataset, split, R, r)  # there, intact and current, or MissingArtefact
    d = features_dir(ctx, dataset, split, R, r)
    return np.load(d / "maps.npy", mmap_mode="r"), np.load(d / "labels.npy")


def unit_dir(ctx: Context, u: Unit) -> Path:
    """Cache folder of a features unit (study.core.plan.Unit)."""
    return features_dir(ctx, u.dataset, u.split, u.R, u.r, u.flip, u.backbone, u.view, u.trim, u.hand)


def unit_spec(ctx: Context, u: Unit) -> dict:
    """Everything a features unit (study.core.plan.Unit) depends on."""
    return features_spec(ctx, u.dataset, u.split, u.R, u.r, u.flip, u.backbone, u.view, u.trim, u.hand)


def random_split(ctx: Context, name: str, R: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """The leakage ablation's data: the dataset's train, validation and test features pooled
    and dealt at random (study.core.splits.random_deal) into splits of the same sizes;
    and the fingerprints of the features it was dealt from."""
    base = name.removesuffix(RANDOM)
    parts = {s: load_features(ctx, base, s, R, R) for s in ABLATION_SPLITS}
    x = np.concatenate([parts[s][0] for s in parts])
    y = np.concatenate([parts[s][1] for s in parts])
    dealt = random_deal([len(parts[s][1]) for s in parts], RANDOM_SPLIT_SEED)
    return {s: (x[idx], y[idx]) for s, idx in zip(parts, dealt)}, {s: parts[s][2] for s in parts}


# --- models ---------------------------------------------------------------------------------


def scorable(ctx: Context, echo=None) -> list[tuple[str, int, int]]:
    """The models `score` scores a folder with (study.core.plan.Plan.scorable), a fine-tuned
    model only where its block 5 is there (the cpu preset commits heads, 0.55 MB each, but
    not fine-tuned blocks, 28 MB each). `echo` gets a line per model left out for want of its block."""
    out, absent = [], []
    for name, R, seed in ctx.plan.scorable():
        if parse(name).remedy == FT5 and not (model_dir(ctx, name, R, seed) / "block5.npz").exists():
            absent.append(f"{name}@{R} seed {seed}")
            continue
        out.append((name, R, seed))
    if absent and echo:
        echo(f"not scored, their fine-tuned block 5 is not here (`{command(ctx, 'train')}` makes it): {', '.join(absent)}")
    return out


def model_dir(ctx: Context, dataset: str, R: int, seed: int) -> Path:
    return ctx.out_dir / "models" / folder(dataset, R) / f"seed{seed}"


def model_record(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """A trained model's marker, its files checked; MissingArtefact naming the first missing one."""
    marker = model_dir(ctx, dataset, R, seed) / "unit.json"
    what, cmd = f"model {dataset}@{R} seed {seed}", command(ctx, "train")
    rec = readable_record(marker) if marker.is_file() else None
    if rec is None:
        raise MissingArtefact(what, marker, cmd)
    return require(marker, rec.get("spec", {}), what, cmd)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def head_arrays(ctx: Context, dataset: str, R: int, seed: int) -> dict[str, np.ndarray]:
    """A trained head's saved arrays (study.network.model.head_from_arrays builds the head)."""
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


def eval_records(ctx: Context, model: str, R: int, eval_ds: str, r: int) -> list[dict]:
    """The evaluation records (one per seed, in seed order) of a model on a table's eval
    dataset (`dataset` or `dataset:split`) at test resolution r."""
    ds, _, split = eval_ds.partition(":")
    return [json.loads(p.read_text()) for p in sorted((ctx.out_dir / "eval" / folder(model, R)).glob(f"seed*/{ds}.{split or 'test'}.r{r}.json"))]


def history(ctx: Context, model: str, R: int, seed: int) -> list[dict]:
    """A trained model's loss and accuracy per epoch."""
    return json.loads((model_dir(ctx, model, R, seed) / "history.json").read_text())["history"]


# --- tables ---------------------------------------------------------------------------------

TABLE_COLUMNS = ["train_dataset", "train_res", "eval_dataset", "eval_res", "n", "accuracy", "accuracy_sd",
                 "accuracy_ci_low", "accuracy_ci_high", "macro_f1", "macro_f1_sd"]
SEPARABILITY_COLUMNS = ["dataset_a", "dataset_b", "R", "r", "n_train", "n_test", "accuracy", "accuracy_ci_low",
                        "accuracy_ci_high"]


def write_table(rows: list[dict], path: Path) -> None:
    """table.csv: one row per (model, R, eval dataset, r) (study.stages.evaluate)."""
    write_csv_atomic(path, TABLE_COLUMNS, rows)


def read_table(path: Path) -> list[dict]:
    return read_csv(path, ("train_res", "eval_res", "n"),
                    ("accuracy", "accuracy_sd", "accuracy_ci_low", "accuracy_ci_high", "macro_f1", "macro_f1_sd"))


def write_separability(rows: list[dict], path: Path) -> None:
    """separability.csv: one row per (dataset pair, R, r) (study.diagnostics.separability)."""
    write_csv_atomic(path, SEPARABILITY_COLUMNS, rows)


def read_separability(path: Path) -> list[dict]:
    """The rows of separability.csv; none if there is no such file."""
    if not path.is_file():
        return []
    return read_csv(path, ("R", "r", "n_train", "n_test"), ("accuracy", "accuracy_ci_low", "accuracy_ci_high"))


def read_hand_share(path: Path) -> list[dict]:
    """The rows of gradcam/hand_share.csv (study.diagnostics.gradcam); none if there is no such
    file. A share is None for a model and test set with no sampled image where a hand was found."""
    if not path.is_file():
        return []
    rows = read_csv(path, ("R", "images", "with_hand"))
    for r in rows:
        r.update({k: float(r[k]) if r[k] != "" else None for k in ("share", "share_ci_low", "share_ci_high", "box_area")})
    return rows


def read_cues(path: Path) -> list[dict]:
    """The rows of cues.csv (study.diagnostics.cues; R None for the frame check); none if there is no such file."""
    if not path.is_file():
        return []
    rows = read_csv(path, ("n_train", "n_test"), ("accuracy", "accuracy_ci_low", "accuracy_ci_high"))
    for r in rows:
        r["R"] = int(r["R"]) if r["R"] else None
    return rows


# --- a folder of one's own photos (score) ------------------------------------------------------

IMAGES = "images.csv"  # every prepared image's dataset, split, file and sha256 (written by prepare)


def study_images(out_dir: Path) -> dict[str, list[tuple[str, str, str]]] | None:
    """sha256 -> the (dataset, split, file) of every prepared image with those bytes, from
    `images.csv`; None if prepare has not written it."""
    path = Path(out_dir) / IMAGES
    if not path.is_file():
        return None
    out: dict[str, list[tuple[str, str, str]]] = {}
    for row in read_csv(path):
        out.setdefault(row["sha256"], []).append((row["dataset"], row["split"], row["file"]))
    return out



def score_dir(ctx: Context, name: str) -> Path:
    """Where `score` writes the results of a folder of photos."""
    return ctx.out_dir / "score" / name
