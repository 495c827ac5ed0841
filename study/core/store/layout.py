"""The map of the study's files: every file and folder name it reads or writes, and nowhere else.

One layout class per folder, each a root and its files by name: the results folder
(`Results`), a model's folder (`ModelFiles`), a folder of photos scored (`ScoreFiles`), the
paper (`PaperFiles`) and the caches' units (`FeatureFiles`, `HandFiles`); the default folders
of the data and the results. `NAMES` collects every name spelled here: no other module of the
package spells one (tests/test_store.py). Paths only: nothing is written, nothing read but to find HOME.

    <cache-dir>/features/<weights sha>/<dataset fingerprint>/<split>/R<R>_r<r>[_flip][_aug<v>][_trim<t>][_hand]/
        feats.npy (N x 512 float32), labels.npy (N int64), unit.json
        [, maps.npy (N x R/16 x R/16 x 512 float32): block-4 maps, at block-5 resolutions]
    <cache-dir>/features/landmarks/<hands unit fingerprint>/<dataset fingerprint>/<split>[_aug<v>]/
        feats.npy (N x 63 float32: study.core.hand.landmark_vectors), labels.npy, found.npy (N bool), unit.json
    <cache-dir>/hands/<models id>/<dataset fingerprint>/<split>/hands.npz, unit.json  (study.hands.landmarks)
    <weights-dir>/vgg16-<sha>.npz (named in weights.json)
    <out>/datasets.json, weights.json, images.csv        (prepare; hands adds to datasets.json)
    <out>/features.json, features_finetuned.json         (features; evaluate)
    <out>/models/<model folder (study.core.names.folder)>/seed<k>/
        head.npz, history.json, unit.json [, block5.npz when fine-tuned, draw.json, pseudo.json];
        curves.png (the report's)
    <out>/eval/<model folder>/seed<k>/<eval dataset>.<split>.r<r>.json (+ .txt)
    <out>/table.csv, separability.csv (+ separability/), cues.csv (+ cues/), gradcam/ (+ hand_share.csv)
    <out>/table.md, paper_numbers.json, report.json     (report)
    <out>/score/<folder name>/ (dataset.json, skipped.csv, features.json, eval/, table.csv, predictions.csv,
                              answers.csv)
    paper/ (paper.md, paper.pdf, figures/, tables/)     (report, for the study of record)

The default folders are HOME's (`find_home`: $STUDY_HOME, else the checkout of the study one
works in or imports the package from), so that `score` and the API find the committed results
from any working folder; options given by the user stay relative to the working folder.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from study.core.errors import MissingResults
from study.core.names import folder

# Where the package's checkout would be: the folder that holds the `study` package.
PACKAGE_PARENT = Path(__file__).resolve().parents[3]


def is_checkout(path: Path) -> bool:
    """Whether `path` is a checkout of this project: a pyproject.toml naming it "study"."""
    try:
        project = tomllib.loads((Path(path) / "pyproject.toml").read_text()).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == "study"


def find_home(cwd: Path | None = None, package: Path = PACKAGE_PARENT) -> Path:
    """The folder the default folders are relative to (absolute): $STUDY_HOME if set; else the
    working folder if it is a checkout; else the checkout that holds the package; else the
    working folder (a package installed elsewhere, a study of one's own)."""
    cwd = Path.cwd() if cwd is None else Path(cwd).absolute()
    if os.environ.get("STUDY_HOME"):
        return Path(os.environ["STUDY_HOME"]).expanduser().absolute()
    for candidate in (cwd, package):
        if is_checkout(candidate):
            return candidate
    return cwd


HOME = find_home()
# The defaults below, under HOME: written relative, as before, when HOME is the working folder
# (short messages, and the paths the tests and docs show); absolute otherwise.
_BASE = Path() if HOME.resolve() == Path.cwd().resolve() else HOME

# A unit's marker (study.core.units): its fingerprint, spec and the manifest of its files.
MARKER = "unit.json"
# The folders of record: each preset's results, by name under HOME (the report's tables quote
# it), and the paper.
RESULTS = Path("results")
PAPER = _BASE / "paper"
# The default data folders: archives, prepared datasets, caches and converted weights (none of
# it committed).
DATA = _BASE / "data"
TFDS_DIR = DATA / "tfds"
CACHE_DIR = DATA / "cache"
WEIGHTS_DIR = DATA / "weights"


def default_out(preset: str) -> Path:
    """A preset's results folder when --out is not given."""
    return _BASE / RESULTS / preset


def require_home(preset: str, option: str) -> None:
    """Refuse, in one line naming `option` (how to point at a results folder), a preset's
    default results folder that prepare has not filled where HOME is no checkout: the cause
    is then the working folder (or STUDY_HOME), not a missing `prepare`."""
    out = default_out(preset)
    if Results(out).datasets.is_file() or is_checkout(HOME):
        return
    if os.environ.get("STUDY_HOME"):
        raise MissingResults(
            f"no {RESULTS / preset} in STUDY_HOME={HOME}, which is no checkout of the study: "
            f"set STUDY_HOME=<the repository> or pass {option}"
        )
    raise MissingResults(
        f"no {RESULTS / preset} here ({HOME}) and no checkout of the study found: run from the repository, "
        f"or set STUDY_HOME=<the repository> or pass {option}"
    )


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
    predictions = _at("predictions.csv")  # each photo's answers: each model's, then each seed's
    answers = _at("answers.csv")  # each model's accuracy on the folder, of its seeds' mean answer

    @property
    def outputs(self) -> list[Path]:
        """What a run of `score` makes after preparing the folder (removed when it changes)."""
        return [self.eval, self.table, self.predictions, self.answers, self.features]

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


def converted_file(weights_dir: Path, sha256: str) -> Path:
    """Where prepare writes converted ImageNet weights, named by their sha256."""
    return Path(weights_dir) / f"vgg16-{sha256[:16]}.npz"
