"""Where every file of the study lives, what a unit holds, and how to read it back.

The stages meet here, never in each other's modules: `features` writes what `train` and
`evaluate` read through this module; `train` writes the heads (and fine-tuned blocks) that
`evaluate` and `score` read. This module, and no other, spells the name of a file or folder
the study reads or writes (tests/test_store.py greps for them): the results folder
(`Results`), a model's folder (`ModelFiles`), a folder of photos scored (`ScoreFiles`), the
paper (`PaperFiles`) and the caches (`FeatureFiles`, `HandFiles`). It also knows the specs that
identify cached features (one `study.core.plan.Unit` describes a features unit from the plan
to the disk), manifests (study.core.units) and array loading; building modules from the arrays
is study.network.model's, running stages is each stage's. A unit another stage needs but that is
missing or damaged is an error naming the file and the command that makes it.

    <cache-dir>/features/<weights sha>/<dataset fingerprint>/<split>/R<R>_r<r>[_flip][_aug<v>][_trim<t>][_hand]/
        feats.npy (N x 512 float32), labels.npy (N int64), unit.json
        [, maps.npy (N x R/16 x R/16 x 512 float32): block-4 maps, at block-5 resolutions]
    <cache-dir>/features/landmarks/<hands unit fingerprint>/<dataset fingerprint>/<split>[_aug<v>]/
        feats.npy (N x 63 float32: study.core.hand.landmark_vectors), labels.npy, found.npy (N bool), unit.json
    <cache-dir>/hands/<models id>/<dataset fingerprint>/<split>/hands.npz, unit.json  (study.hands.landmarks)
    <weights-dir>/<converted file named in weights.json>
    <out>/datasets.json, weights.json, images.csv        (prepare; hands adds to datasets.json)
    <out>/features.json, features_finetuned.json         (features; evaluate)
    <out>/models/<model folder (study.core.names.folder)>/seed<k>/
        head.npz, history.json, unit.json [, block5.npz when fine-tuned, draw.json, pseudo.json];
        curves.png (the report's)
    <out>/eval/<model folder>/seed<k>/<eval dataset>.<split>.r<r>.json (+ .txt)
    <out>/table.csv, separability.csv (+ separability/), cues.csv (+ cues/), gradcam/ (+ hand_share.csv)
    <out>/table.md, paper_numbers.json, report.json     (report)
    <out>/score/<folder name>/ (dataset.json, skipped.csv, features.json, eval/, table.csv, predictions.csv)
    paper/ (paper.md, paper.pdf, figures/, tables/)     (report, for the study of record)
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

# A unit's marker (study.core.units): its fingerprint, spec and the manifest of its files.
MARKER = "unit.json"
# The folders of record, relative to the repository: each preset's results, and the paper.
RESULTS = Path("results")
PAPER = Path("paper")
# The default data folders, relative to the working folder: archives, prepared datasets,
# caches and converted weights (none of it committed).
DATA = Path("data")
TFDS_DIR = DATA / "tfds"
CACHE_DIR = DATA / "cache"
WEIGHTS_DIR = DATA / "weights"


def default_out(preset: str) -> Path:
    """A preset's results folder when --out is not given."""
    return RESULTS / preset


# Every file and folder name the layouts below spell (tests/test_store.py checks that no other
# module of the package spells one).
NAMES: set[str] = {MARKER, RESULTS.name, PAPER.name, "score", "separability", "cues", "features", "hands", "landmarks"}


def _at(name: str) -> property:
    """A file or folder of a layout, by its name under the layout's root."""
    NAMES.update(Path(name).parts)
    return property(lambda self: self.root / name, doc=f"{name} in this folder")


def name_of(layout: type, attr: str) -> str:
    """The name of a layout's file, for a message that names it (`name_of(Results, "table")`)."""
    return getattr(layout(Path(".")), attr).name


def eval_path(root: Path, train_ds: str, R: int, seed: int, eval_ds: str, split: str, r: int) -> Path:
    """An evaluation's record under an `eval/` folder (the study's, or a scored folder's)."""
    return root / folder(train_ds, R) / f"seed{seed}" / f"{eval_ds}.{split}.r{r}.json"


@dataclasses.dataclass(frozen=True)
class Results:
    """A results folder (results/<preset>/ or --out) and every file the stages write there."""

    root: Path
    datasets = _at("datasets.json")  # prepare: the datasets, their splits and (hands) detection
    weights = _at("weights.json")  # prepare: the converted ImageNet weights
    images = _at("images.csv")  # prepare: every prepared image's dataset, split, file and sha256
    features = _at("features.json")  # features: the units computed and their rates
    features_finetuned = _at("features_finetuned.json")  # evaluate: fine-tuned backbones' features
    models = _at("models")
    eval = _at("eval")
    table = _at("table.csv")
    separability = _at("separability.csv")
    cues = _at("cues.csv")
    gradcam = _at("gradcam")
    hand_share = _at("gradcam/hand_share.csv")
    gradcam_figures = _at("gradcam/figures")
    table_md = _at("table.md")
    paper_numbers = _at("paper_numbers.json")
    report = _at("report.json")  # the report's marker
    lock = _at(".run.lock")  # held by a command for as long as it runs
    bench = _at("bench.json")
    bench_local = _at("bench.local.json")

    def model(self, name: str, R: int, seed: int) -> "ModelFiles":
        """The files of model `name` trained at resolution R with `seed`."""
        return ModelFiles(self.models / folder(name, R) / f"seed{seed}")

    def evaluation(self, train_ds: str, R: int, seed: int, eval_ds: str, split: str, r: int) -> Path:
        """Path of the evaluation JSON of one model (train_ds, R, seed) on eval_ds's `split` at test resolution r."""
        return eval_path(self.eval, train_ds, R, seed, eval_ds, split, r)

    def separability_unit(self, a: str, b: str, R: int, r: int) -> Path:
        """Path of the separability result for datasets a and b at model resolution R and test resolution r."""
        return self.root / "separability" / f"{a}~{b}@{R}" / f"r{r}.json"

    def cue_unit(self, a: str, b: str, check: str) -> Path:
        """Path of the cue-check result `check` for datasets a and b."""
        return self.root / "cues" / f"{a}~{b}" / f"{check.replace(' ', '_')}.json"

    def gradcam_unit(self, name: str, R: int, dataset: str) -> Path:
        """Path of the Grad-CAM JSON of model `name` at resolution R on `dataset`."""
        return self.gradcam / folder(name, R) / f"{dataset}.json"

    def gradcam_overview(self, ext: str = "png") -> Path:
        """Path of the Grad-CAM overview figure with extension `ext`."""
        return self.gradcam_figures / f"overview.{ext}"

    @property
    def gradcam_overview_marker(self) -> Path:
        """Path of the JSON marker written beside the Grad-CAM overview figure."""
        return self.gradcam_overview("json")

    def score(self, name: str) -> "ScoreFiles":
        """Where `score` writes the results of a folder of photos."""
        return ScoreFiles(self.root / "score" / name)

    def report_inputs(self) -> list[Path]:
        """Every file the report reads, in a fixed order (its fingerprint hashes their bytes)."""
        inputs = [self.table, self.datasets, self.weights]
        inputs += [self.separability] if self.separability.is_file() else []
        inputs += sorted(self.models.glob(f"*/seed*/{ModelFiles.HISTORY}")) + sorted(self.eval.rglob("*.json"))
        inputs += sorted(self.gradcam_figures.glob("overview.*"))
        inputs += [self.cues] if self.cues.is_file() else []
        inputs += [self.hand_share] if self.hand_share.is_file() else []
        return inputs


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """A trained model's folder (one seed): what `train` writes and `evaluate` and `score` read."""

    HISTORY = "history.json"
    root: Path
    marker = _at(MARKER)
    head = _at("head.npz")
    block5 = _at("block5.npz")  # a fine-tuned block 5
    history = _at(HISTORY)
    curves = _at("curves.png")  # drawn by the report from history.json
    draw = _at("draw.json")  # a few-shot model's target images
    pseudo = _at("pseudo.json")  # a self-trained model's pseudo-labels per round
    checkpoint = _at("checkpoint.npz")  # while training one seed alone

    def group_checkpoint(self, seeds: list[int]) -> Path:
        """Where a group of heads keeps its state between epochs (beside its members' folders)."""
        return self.root.parent / f"checkpoint-seeds{'-'.join(map(str, seeds))}.npz"

    def group_checkpoints(self) -> list[Path]:
        """The group checkpoints (checkpoint-seeds*.npz) beside this model's seed folders, sorted."""
        return sorted(self.root.parent.glob("checkpoint-seeds*.npz"))


@dataclasses.dataclass(frozen=True)
class ScoreFiles:
    """A folder of photos scored by `score`, under <out>/score/<name>/."""

    root: Path
    dataset = _at("dataset.json")  # the folder as prepared (and its hands)
    skipped = _at("skipped.csv")  # each file left out, and why
    features = _at("features.json")
    eval = _at("eval")
    table = _at("table.csv")
    predictions = _at("predictions.csv")

    @property
    def outputs(self) -> list[Path]:
        """What a run of `score` makes after preparing the folder (removed when it changes)."""
        return [self.eval, self.table, self.predictions, self.features]

    def evaluation(self, train_ds: str, R: int, seed: int, eval_ds: str, split: str, r: int) -> Path:
        """Path of the evaluation JSON of one model (train_ds, R, seed) on eval_ds's `split` at test resolution r."""
        return eval_path(self.eval, train_ds, R, seed, eval_ds, split, r)


@dataclasses.dataclass(frozen=True)
class PaperFiles:
    """The paper's folder: paper/ for the study of record, else <out>/paper or --paper-dir."""

    root: Path
    md = _at("paper.md")
    pdf = _at("paper.pdf")
    tables = _at("tables")
    comparison = _at("tables/comparison.tex")
    figures = _at("figures")

    def figure(self, name: str, ext: str) -> Path:
        """Path of the paper figure `name` with extension `ext`."""
        return self.figures / f"{name}.{ext}"


@dataclasses.dataclass(frozen=True)
class FeatureFiles:
    """A cached features unit's folder."""

    root: Path
    marker = _at(MARKER)
    feats = _at("feats.npy")
    labels = _at("labels.npy")
    maps = _at("maps.npy")  # block-4 maps, at block-5 resolutions
    found = _at("found.npy")  # landmark vectors: where a hand was found

    @property
    def lock(self) -> Path:
        """Path of the lock file beside this feature folder."""
        return self.root.with_name(self.root.name + ".lock")


@dataclasses.dataclass(frozen=True)
class HandFiles:
    """A cached hands unit's folder (study.hands.landmarks)."""

    root: Path
    marker = _at(MARKER)
    arrays = _at("hands.npz")

    def parts(self, spec_fingerprint: str) -> Path:
        """Where an unfinished unit keeps its finished chunks."""
        return self.root / f"parts-{spec_fingerprint}"

    def part(self, spec_fingerprint: str, chunk: int) -> Path:
        """Path of the part file for chunk `chunk` under the spec fingerprint's parts folder."""
        return self.parts(spec_fingerprint) / f"{chunk:06d}.npz"


def command(ctx: Context, stage: str) -> str:
    """The command that runs `stage` for this context's preset and results folder."""
    out = "" if ctx.out_dir == default_out(ctx.preset.name) else f" --out {ctx.out_dir}"
    return f"python -m study.run {stage} --preset {ctx.preset.name}{out}"


def converted_file(weights_dir: Path, sha256: str) -> Path:
    """Where prepare writes converted ImageNet weights, named by their sha256."""
    return Path(weights_dir) / f"vgg16-{sha256[:16]}.npz"


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


def scorable(ctx: Context, echo=None) -> list[tuple[str, int, int]]:
    """The models `score` scores a folder with (study.core.plan.Plan.scorable), a fine-tuned
    model only where its block 5 is there (the cpu preset commits heads, 0.55 MB each, but
    not fine-tuned blocks, 28 MB each). `echo` gets a line per model left out for want of its block."""
    out, absent = [], []
    for name, R, seed in ctx.plan.scorable():
        if parse(name).remedy == FT5 and not model_files(ctx, name, R, seed).block5.exists():
            absent.append(f"{name}@{R} seed {seed}")
            continue
        out.append((name, R, seed))
    if absent and echo:
        echo(
            f"not scored, their fine-tuned block 5 is not here (`{command(ctx, 'train')}` makes it): "
            f"{', '.join(absent)}"
        )
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
