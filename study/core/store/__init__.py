"""Where every file of the study lives, what a unit holds, and how to read it back.

The stages meet here, never in each other's modules: `features` writes what `train` and
`evaluate` read through this package; `train` writes the heads (and fine-tuned blocks) that
`evaluate` and `score` read. Its map of names (`layout`: Results, ModelFiles, ScoreFiles,
PaperFiles, FeatureFiles, HandFiles, re-exported here) is the only place a file or folder of
the study is spelled (tests/test_store.py greps for them). This module knows the specs that
identify cached features (one `study.core.plan.Unit` describes a features unit from the plan
to the disk), manifests (study.core.units) and array loading; building modules from the arrays
is study.network.model's, running stages is each stage's. A unit another stage needs but that is
missing or damaged is an error naming the file and the command that makes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from study.core.files import read_csv, write_csv_atomic
from study.core.hand import MODEL_FILES, augment_landmarks, crop_boxes, landmark_vectors, to_stored
from study.core.names import FT5, RANDOM, folder, parse
from study.core.plan import Unit
from study.core.splits import random_deal

# The map of names, re-exported: a stage asks the store, whichever half answers.
from study.core.store.layout import (
    CACHE_DIR as CACHE_DIR,
)
from study.core.store.layout import (
    DATA as DATA,
)
from study.core.store.layout import (
    HOME as HOME,
)
from study.core.store.layout import (
    MARKER as MARKER,
)
from study.core.store.layout import (
    NAMES as NAMES,
)
from study.core.store.layout import (
    PAPER as PAPER,
)
from study.core.store.layout import (
    RESULTS as RESULTS,
)
from study.core.store.layout import (
    TFDS_DIR as TFDS_DIR,
)
from study.core.store.layout import (
    WEIGHTS_DIR as WEIGHTS_DIR,
)
from study.core.store.layout import (
    FeatureFiles as FeatureFiles,
)
from study.core.store.layout import (
    HandFiles as HandFiles,
)
from study.core.store.layout import (
    ModelFiles as ModelFiles,
)
from study.core.store.layout import (
    PaperFiles as PaperFiles,
)
from study.core.store.layout import (
    Results as Results,
)
from study.core.store.layout import (
    ScoreFiles as ScoreFiles,
)
from study.core.store.layout import (
    converted_file as converted_file,
)
from study.core.store.layout import (
    default_out as default_out,
)
from study.core.store.layout import (
    eval_path as eval_path,
)
from study.core.store.layout import (
    find_home as find_home,
)
from study.core.store.layout import (
    is_checkout as is_checkout,
)
from study.core.store.layout import (
    name_of as name_of,
)
from study.core.store.layout import (
    require_home as require_home,
)
from study.core.units import MissingArtefact, fingerprint, readable_record, require

if TYPE_CHECKING:  # the Context holds a Results; the store only reads the Context it is handed
    from study.core.context import Context

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


def converted_weights(ctx: Context) -> Path:
    """The converted ImageNet weights that prepare wrote (named in weights.json)."""
    return ctx.weights_dir / ctx.weights_record["converted_file"]


# --- features ------------------------------------------------------------------------------


def features_dir(ctx: Context, u: Unit) -> Path:
    """Cache folder of a features unit (the prepared backbone's unless `u.weights`)."""
    if u.hand == "landmarks":
        return (
            ctx.cache_dir
            / "features"
            / "landmarks"
            / hands_fingerprint(ctx, u.dataset, u.split)
            / ctx.dataset_fingerprint(u.dataset)
            / (f"{u.split}_aug{u.view}" if u.view else u.split)
        )
    sha = (u.weights or ctx.weights_record["converted_sha256"])[:16]
    name = (
        f"R{u.R}_r{u.r}{'_flip' if u.flip else ''}{f'_aug{u.view}' if u.view else ''}"
        f"{f'_trim{u.trim}' if u.trim else ''}{'_hand' if u.hand == 'crop' else ''}"
    )
    return ctx.cache_dir / "features" / sha / ctx.dataset_fingerprint(u.dataset) / u.split / name


def feature_files(ctx: Context, u: Unit) -> FeatureFiles:
    """The feature files of unit `u` in this run's context."""
    return FeatureFiles(features_dir(ctx, u))


def features_spec(ctx: Context, u: Unit) -> dict:
    """Everything a features unit depends on. The keys for block-4 maps and augmented views
    appear only in the units that have them, so that units cached before they existed stay valid."""
    if u.hand == "landmarks":
        spec = {
            "kind": "landmarks",
            "version": LANDMARK_FEATURES_VERSION,
            "dataset": u.dataset,
            "dataset_fingerprint": ctx.dataset_fingerprint(u.dataset),
            "split": u.split,
            "images": ctx.plan.splits(u.dataset)[u.split]["images"],
            "hands": hands_fingerprint(ctx, u.dataset, u.split),
        }
        if u.view:
            h = ctx.preset.hands
            spec["augment"] = {
                "rotation": h.landmark_rotation,
                "stretch": list(h.landmark_stretch),
                "shear": h.landmark_shear,
                "view": u.view,
                "seed": AUGMENT_SEED,
            }
        return spec
    spec = {
        "kind": "features",
        "version": FEATURES_VERSION,
        "weights": u.weights or ctx.weights_record["converted_sha256"],
        "dataset": u.dataset,
        "dataset_fingerprint": ctx.dataset_fingerprint(u.dataset),
        "split": u.split,
        "images": ctx.plan.splits(u.dataset)[u.split]["images"],
        "R": u.R,
        "r": u.r,
        "flip": u.flip,
    }
    if ctx.plan.holds_maps(u):
        spec["block4_maps"] = True
    if u.view:
        spec["augment"] = dataclasses.asdict(ctx.preset.augment) | {"view": u.view, "seed": AUGMENT_SEED}
    if u.trim:
        spec["trim"] = u.trim
    if u.hand == "crop":
        spec["crop"] = {"margin": ctx.preset.hands.margin, "hands": hands_fingerprint(ctx, u.dataset, u.split)}
    return spec


def features_fingerprint(ctx: Context, u: Unit) -> str:
    """The fingerprint of a computed features unit; MissingArtefact if it is missing or damaged.
    For `u.hand` "both" (never cached as one unit), of the crops' and the landmarks' units."""
    if u.hand == "both":
        return fingerprint(
            {
                "crop": features_fingerprint(ctx, u._replace(hand="crop")),
                "landmarks": features_fingerprint(ctx, Unit.landmarks(u.dataset, u.split)),
            }
        )
    marks = u.hand == "landmarks"
    what = (
        f"{'landmark vectors' if marks else 'features'} of {u.dataset}/{u.split}"
        + ("" if marks else f" at R={u.R}, r={u.r}")
        + (f", augmented view {u.view}" if u.view else "")
        + (f", without a {u.trim}-pixel border" if u.trim else "")
        + (", hand crops" if u.hand == "crop" else "")
    )
    rec = require(feature_files(ctx, u).marker, features_spec(ctx, u), what, command(ctx, "features"))
    return rec["fingerprint"]


def load_features(ctx: Context, u: Unit) -> tuple[np.ndarray, np.ndarray, str]:
    """Cached features (N x D) and labels (N) of a unit, and its fingerprint. For `u.hand`
    "both": the hand crops' features, the landmark vector and whether a hand was found (1 or
    0), side by side (N x 576), as a model of both views reads them."""
    if u.hand == "both":
        x, y, _ = load_features(ctx, u._replace(hand="crop"))
        marks = Unit.landmarks(u.dataset, u.split)
        lm, ly, _ = load_features(ctx, marks)
        if not np.array_equal(y, ly):
            raise MissingArtefact(
                f"landmark vectors of {u.dataset}/{u.split} in the order of its crops",
                features_dir(ctx, marks),
                command(ctx, "features") + " --force",
            )
        found = load_found(ctx, u.dataset, u.split)[:, None].astype(np.float32)
        return np.concatenate([x, lm, found], axis=1), y, features_fingerprint(ctx, u)
    fp = features_fingerprint(ctx, u)
    files = feature_files(ctx, u)
    return np.load(files.feats), np.load(files.labels), fp


def load_found(ctx: Context, dataset: str, split: str) -> np.ndarray:
    """Where a split's landmark vectors hold a hand (N bool)."""
    u = Unit.landmarks(dataset, split)
    features_fingerprint(ctx, u)
    return np.load(feature_files(ctx, u).found)


# --- hand landmarks (the hands stage, study.hands) -----------------------------------------------


def hands_models_id() -> str:
    """Names the detector: the sha256 of its two model files, shortened."""
    return hashlib.sha256("".join(sha for _, sha in MODEL_FILES.values()).encode()).hexdigest()[:16]


def hand_files(cache_dir: Path, dataset_fingerprint: str, split: str) -> HandFiles:
    """A prepared split's hands unit, by its dataset's fingerprint."""
    return HandFiles(Path(cache_dir) / "hands" / hands_models_id() / dataset_fingerprint / split)


def hands_lock(cache_dir: Path) -> Path:
    """Held while the hands stage computes, so that two runs never detect the same images."""
    return Path(cache_dir) / "hands" / ".lock"


def hands_spec(dataset_fingerprint: str, split: str, tries) -> dict:
    """Everything a hands unit depends on: the split, the detector's models, the tries."""
    return {
        "dataset_fingerprint": dataset_fingerprint,
        "split": split,
        "version": HANDS_VERSION,
        "models": {role: sha for role, (_, sha) in MODEL_FILES.items()},
        "tries": [list(t) for t in tries],
    }


def hands_fingerprint(ctx: Context, dataset: str, split: str) -> str:
    """The fingerprint of a split's cached landmarks; MissingArtefact naming the command that
    makes them if they are missing, damaged or of another configuration."""
    fp = ctx.dataset_fingerprint(dataset)
    rec = require(
        hand_files(ctx.cache_dir, fp, split).marker,
        hands_spec(fp, split, ctx.preset.hands.tries),
        f"the hand landmarks of {dataset}/{split}",
        command(ctx, "hands"),
    )
    return rec["fingerprint"]


HANDS_FIELDS = ("landmarks", "presence", "left", "palm", "tried", "size")


def hands_arrays(files: HandFiles) -> dict[str, np.ndarray]:
    """A finished hands unit's arrays (study.hands.landmarks says what each holds)."""
    with np.load(files.arrays) as z:
        return {f: z[f] for f in HANDS_FIELDS}


def load_hands(ctx: Context, dataset: str, split: str) -> dict[str, np.ndarray]:
    """A prepared split's cached landmarks, checked (`hands_fingerprint`)."""
    hands_fingerprint(ctx, dataset, split)
    return hands_arrays(hand_files(ctx.cache_dir, ctx.dataset_fingerprint(dataset), split))


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
        points = augment_landmarks(
            points,
            arrays["size"],
            np.random.default_rng([AUGMENT_SEED, view]),
            h.landmark_rotation,
            h.landmark_stretch,
            h.landmark_shear,
        )
    return landmark_vectors(points, arrays["left"], arrays["size"]), arrays["tried"] >= 0


def load_maps(ctx: Context, u: Unit) -> tuple[np.ndarray, np.ndarray]:
    """The block-4 maps (N x R/16 x R/16 x 512, memory-mapped) and labels of a features unit
    at a block-5 resolution (see study.core.plan.Plan.holds_maps)."""
    if not ctx.plan.holds_maps(u._replace(r=u.R)):
        raise ValueError(f"no block-4 maps in {u}: the preset fine-tunes block 5 at {ctx.preset.block5.resolutions}")
    features_fingerprint(ctx, u)  # there, intact and current, or MissingArtefact
    files = feature_files(ctx, u)
    return np.load(files.maps, mmap_mode="r"), np.load(files.labels)


def random_split(ctx: Context, name: str, R: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """The leakage ablation's data: the dataset's train, validation and test features pooled
    and dealt at random (study.core.splits.random_deal) into splits of the same sizes;
    and the fingerprints of the features it was dealt from."""
    base = name.removesuffix(RANDOM)
    parts = {s: load_features(ctx, Unit(base, s, R, R)) for s in ABLATION_SPLITS}
    x = np.concatenate([parts[s][0] for s in parts])
    y = np.concatenate([parts[s][1] for s in parts])
    dealt = random_deal([len(parts[s][1]) for s in parts], RANDOM_SPLIT_SEED)
    return {s: (x[idx], y[idx]) for s, idx in zip(parts, dealt)}, {s: parts[s][2] for s in parts}


# --- models ---------------------------------------------------------------------------------


def scorable(ctx: Context) -> list[tuple[str, int, int]]:
    """The models `score` scores a folder with (study.core.plan.Plan.scorable) whose files are
    here (`absent_scorable` names the others)."""
    absent = set(absent_scorable(ctx))
    return [m for m in ctx.plan.scorable() if m not in absent]


def absent_scorable(ctx: Context) -> list[tuple[str, int, int]]:
    """The scorable models whose head is not here, or whose fine-tuned block 5 is not: the
    study of record commits the heads `score` needs (up to 0.62 MB each) but not the blocks
    5 (28 MB each), nor yet the heads of both views and of augmented landmarks (.gitignore)."""
    out = []
    for name, R, seed in ctx.plan.scorable():
        files = model_files(ctx, name, R, seed)
        if not files.head.exists() or (parse(name).remedy == FT5 and not files.block5.exists()):
            out.append((name, R, seed))
    return out


def model_files(ctx: Context, dataset: str, R: int, seed: int) -> ModelFiles:
    """A trained model's folder (one seed) in this run's results."""
    return ctx.results.model(dataset, R, seed)


def model_record(ctx: Context, dataset: str, R: int, seed: int) -> dict:
    """A trained model's marker, its files checked; MissingArtefact naming the first missing one."""
    marker = model_files(ctx, dataset, R, seed).marker
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
    return _arrays(model_files(ctx, dataset, R, seed).head)


def block5_arrays(ctx: Context, dataset: str, R: int, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """A fine-tuned model's block 5, as {convolution index: (kernel, bias)}."""
    model_record(ctx, dataset, R, seed)
    z = _arrays(model_files(ctx, dataset, R, seed).block5)
    return {
        int(k.removeprefix("kernel_")): (z[k], z["bias_" + k.removeprefix("kernel_")])
        for k in z
        if k.startswith("kernel_")
    }


def history(ctx: Context, model: str, R: int, seed: int) -> list[dict]:
    """A trained model's loss and accuracy per epoch."""
    return json.loads(model_files(ctx, model, R, seed).history.read_text())["history"]


# --- evaluations ----------------------------------------------------------------------------


def eval_records(ctx: Context, model: str, R: int, eval_ds: str, r: int) -> list[dict]:
    """The evaluation records (one per seed, in seed order) of a model on a table's eval
    dataset (`dataset` or `dataset:split`) at test resolution r."""
    ds, _, split = eval_ds.partition(":")
    pattern = f"seed*/{ds}.{split or 'test'}.r{r}.json"
    return [json.loads(p.read_text()) for p in sorted((ctx.results.eval / folder(model, R)).glob(pattern))]


# --- tables ---------------------------------------------------------------------------------

TABLE_COLUMNS = [
    "train_dataset",
    "train_res",
    "eval_dataset",
    "eval_res",
    "n",
    "accuracy",
    "accuracy_sd",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "macro_f1",
    "macro_f1_sd",
]
SEPARABILITY_COLUMNS = [
    "dataset_a",
    "dataset_b",
    "R",
    "r",
    "n_train",
    "n_test",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
]


def write_table(rows: list[dict], path: Path) -> None:
    """table.csv: one row per (model, R, eval dataset, r) (study.stages.evaluate)."""
    write_csv_atomic(path, TABLE_COLUMNS, rows)


def read_table(path: Path) -> list[dict]:
    """The rows of a table.csv, numbers as numbers."""
    return read_csv(
        path,
        ("train_res", "eval_res", "n"),
        ("accuracy", "accuracy_sd", "accuracy_ci_low", "accuracy_ci_high", "macro_f1", "macro_f1_sd"),
    )


def write_separability(rows: list[dict], path: Path) -> None:
    """separability.csv: one row per (dataset pair, R, r) (study.stages.separability)."""
    write_csv_atomic(path, SEPARABILITY_COLUMNS, rows)


def read_separability(path: Path) -> list[dict]:
    """The rows of separability.csv; none if there is no such file."""
    if not path.is_file():
        return []
    return read_csv(path, ("R", "r", "n_train", "n_test"), ("accuracy", "accuracy_ci_low", "accuracy_ci_high"))


def read_hand_share(path: Path) -> list[dict]:
    """The rows of gradcam/hand_share.csv (study.stages.gradcam); none if there is no such
    file. A share is None for a model and test set with no sampled image where a hand was found."""
    if not path.is_file():
        return []
    rows = read_csv(path, ("R", "images", "with_hand"))
    for r in rows:
        r.update(
            {k: float(r[k]) if r[k] != "" else None for k in ("share", "share_ci_low", "share_ci_high", "box_area")}
        )
    return rows


def read_cues(path: Path) -> list[dict]:
    """The rows of cues.csv (study.stages.cues; R None for the frame check); none if there is no such file."""
    if not path.is_file():
        return []
    rows = read_csv(path, ("n_train", "n_test"), ("accuracy", "accuracy_ci_low", "accuracy_ci_high"))
    for r in rows:
        r["R"] = int(r["R"]) if r["R"] else None
    return rows


# --- a folder of one's own photos (score) ------------------------------------------------------


def study_images(results: Results) -> dict[str, list[tuple[str, str, str]]] | None:
    """sha256 -> the (dataset, split, file) of every prepared image with those bytes, from
    `images.csv`; None if prepare has not written it."""
    if not results.images.is_file():
        return None
    out: dict[str, list[tuple[str, str, str]]] = {}
    for row in read_csv(results.images):
        out.setdefault(row["sha256"], []).append((row["dataset"], row["split"], row["file"]))
    return out


def score_files(ctx: Context, name: str) -> ScoreFiles:
    """Where `score` writes the results of a folder of photos."""
    return ctx.results.score(name)
