"""`score`: every trained model of a preset on a folder of one's own photos, at every r.

The folder is a class-per-folder photo set (`<dir>/<class>/*` or `<dir>/<split>/<class>/*`,
class names matched case-insensitively; unknown class folders, unreadable files and links to
files outside the folder are listed and skipped). It is prepared like any dataset, but every
image is a test image (`prepare_folder`, which returns the context with the folder among its
datasets). The features and evaluation stages then score it (`features.run_folder`,
`evaluate.run_folder`; the command line lists the sequence), and `report_folder` writes the
per-photo predictions and prints the table and the path of every file written. Everything
goes to `results/<preset>/score/<name>/` (study.core.store.ScoreFiles): `dataset.json` (the
summary), `skipped.csv` (each file left out and why), one evaluation JSON per model and
degradation under `eval/`, `table.csv`, and `predictions.csv` (one row per photo: its label,
its split if it is one of the study's own images, the try of the hand detector that found
its hand or "none", and each model's predicted label and probability at r = R; a landmark
model predicts `nothing` or "(no hand)", with no probability, for a photo without a hand). It needs the trained models
(committed for the `cpu` preset) and the ImageNet weights, not the study's datasets.

A model chooses among every label it knows, so a folder of a few letters is scored honestly
(choosing among the folder's letters only would score a one-letter folder 1.000 whatever the
photos); `--folder-labels-only` restricts the choice to the folder's labels, the rule of the
study's cross-domain table, for a set known to cover exactly its labels.

A photo that is, byte for byte, an image of the study's datasets (`images.csv`, which
`prepare` writes and the study of record commits) is named with its split: a model scored on
photos it was trained on scores high for that reason, and the output says which models saw them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from study.core import store
from study.core.context import Context
from study.core.errors import ConfigError, DatasetError
from study.core.files import write_csv_atomic, write_json_atomic
from study.core.labels import CANONICAL, label_name
from study.core.names import parse
from study.datasets import DATASETS, DatasetSpec, open_builder
from study.datasets.build import build_dataset, format_summary, image_listing, read_index, summarize


def prepare_folder(ctx: Context) -> Context:
    """Check the models, prepare `ctx.folder` as a test-only dataset; the context that scores it."""
    folder = Path(ctx.folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder (expected <dir>/<class>/<image>)")
    if not any(files for _, _, files in os.walk(folder)):
        raise DatasetError(f"{folder} holds no files (expected <dir>/<class>/<image>, one folder per letter)")
    name = ctx.folder_name or re.sub(r"[^a-z0-9_]+", "_", folder.resolve().name.lower()).strip("_") or "photos"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name):
        raise ConfigError(
            f"--name {name!r}: a plain name (lower-case letters, digits and _), the folder's results go to "
            f"{store.score_files(ctx, '<name>').root}"
        )
    if name in DATASETS:
        raise ConfigError(f"--name {name!r} is one of the study's datasets; choose another name")
    # The models evaluate scores a folder with: not the few-shot or adapted ones, nor the ablation.
    models = store.scorable(ctx, ctx.echo)
    if not models:
        raise DatasetError(
            f"no trained models in {ctx.out_dir}: run `python -m study.run all --preset {ctx.preset.name}` first"
        )
    for m in models:
        store.model_record(ctx, *m)  # each model's files there and intact, or an error naming them
    out = store.score_files(ctx, name)
    source = str(folder.resolve())
    before = _previous(out)
    if before and before.get("folder", source) != source:
        raise ConfigError(
            f"{out.root} holds the scores of another folder, {before['folder']}: give this one another --name"
        )
    spec = DatasetSpec(name, folder.name, "AslFolder", score_only=True, source=source)
    # A folder whose photos changed is prepared again (force: the study's datasets are not touched)
    builder = build_dataset(spec, ctx.preset, folder, ctx.tfds_dir, True, ctx.echo)
    summary = summarize(builder) | {"folder": source}
    summary["study_images"] = study_images(ctx, image_listing(name, builder, folder))
    if before and before["archive"]["listing_sha256"] != summary["archive"]["listing_sha256"]:
        ctx.echo(f"{folder}: its files changed since it was last scored; its old scores in {out.root} are replaced")
        for old in out.outputs:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    ctx.echo(format_summary(name, summary, str(out.skipped)))
    write_json_atomic(out.dataset, summary)
    skipped = [{"file": s["path"], "files": s["files"], "reason": s["reason"]} for s in summary["skipped"]]
    write_csv_atomic(out.skipped, ["file", "files", "reason"], skipped)
    ctx = ctx.with_folder(name, spec, summary)
    ctx.echo(choice_rule(ctx, name))
    ctx.echo(study_images_note(ctx, summary["study_images"]))
    return ctx


def study_images(ctx: Context, photos: list[dict]) -> dict:
    """Which photos of the folder are, byte for byte, images of the study's own datasets
    (`images.csv`, written by prepare and committed with the study of record): scoring a model
    on images it was trained on inflates its score, and the user should know."""
    known = store.study_images(ctx.results)
    if known is None:
        return {"checked": False, "photos": len(photos), "matches": []}
    matches = [
        {"file": p["file"], "dataset": d, "split": s, "study_file": f}
        for p in photos
        for d, s, f in known.get(p["sha256"], [])[:1]
    ]
    return {"checked": True, "photos": len(photos), "matches": matches}


def study_images_note(ctx: Context, found: dict) -> str:
    """A line if none of the photos is the study's own, a warning naming the models that saw
    those that are (in their training or validation split), or why it could not be checked."""
    if not found["checked"]:
        return (
            f"not checked whether these photos are images of the study's datasets: "
            f"{ctx.results.images} is missing (`{store.command(ctx, 'prepare')}` writes it)"
        )
    matches = found["matches"]
    if not matches:
        return f"none of the {found['photos']} photos is an image of the study's datasets ({ctx.results.images.name})"
    counts: dict[tuple[str, str], int] = {}
    for m in matches:
        counts[m["dataset"], m["split"]] = counts.get((m["dataset"], m["split"]), 0) + 1
    where = ", ".join(f"{n} {s} images of {d}" for (d, s), n in sorted(counts.items()))
    seen = {d for (d, s) in counts if s in ("train", "validation")}
    models = list(dict.fromkeys(f"{m}@{R}" for m, R, _ in store.scorable(ctx) if seen & set(parse(m).datasets)))
    line = f"warning: {len(matches)} of the {found['photos']} photos are images of the study's own datasets ({where})"
    if models:
        line += (
            f"; the models trained on {' and '.join(sorted(seen))} saw their train and validation images "
            f"({', '.join(models)}), so their scores on this folder are inflated"
        )
    line += (
        f"; test and left-out images were never seen by any model. {store.name_of(store.ScoreFiles, 'predictions')} "
        "names each photo's split in the study (column `study image`)"
    )
    return line


def _previous(out: store.ScoreFiles) -> dict | None:
    """What the results folder says of the folder it last scored (its dataset.json), if anything."""
    try:
        return json.loads(out.dataset.read_text())
    except (OSError, ValueError):
        return None


def choice_rule(ctx: Context, name: str) -> str:
    """The line that says which labels the models choose among (study.core.plan.Plan.choices)."""
    n = len(ctx.plan.classes(name))
    if ctx.folder_labels_only and n >= 2:
        return f"the models choose among the folder's {n} labels only (--folder-labels-only)"
    if ctx.folder_labels_only:
        return (
            "the folder has one label, so the models choose among every label they know "
            "(--folder-labels-only needs two)"
        )
    return (
        f"the models choose among every label they know; the folder has {n} (--folder-labels-only "
        "would restrict them to those)"
    )


def report_folder(ctx: Context) -> list[Path]:
    """predictions.csv; the table, as table.csv holds it; the path of every file written."""
    out = store.score_files(ctx, ctx.scoring)
    predictions = write_predictions(ctx, out.predictions)
    ctx.echo(format_table(store.read_table(out.table)))
    found = json.loads(out.dataset.read_text()).get("study_images")
    if found and found["matches"]:
        ctx.echo(study_images_note(ctx, found))
    written = [out.dataset, out.skipped, out.eval, out.table, predictions]
    ctx.echo("written:\n" + "\n".join(f"  {p}" for p in written))
    return written


def write_predictions(ctx: Context, path: Path) -> Path:
    """One row per photo of the folder: its file and label, then for each model and seed (at
    r = R) the label predicted and its probability; blank where the model does not know the
    photo's label (it is not scored on it)."""
    name = ctx.scoring
    out = store.score_files(ctx, name)
    found = json.loads(out.dataset.read_text()).get("study_images") or {"matches": []}
    study = {m["file"]: f"{m['dataset']} {m['split']}" for m in found["matches"]}
    hands = photo_hands(ctx, name)
    columns, by_file = ["file", "label", "study image", "hand"], {}
    for e in ctx.plan.evaluations(store.scorable(ctx), [name]):
        if e.r != e.R:
            continue
        rec = json.loads(out.evaluation(*e).read_text())
        col = f"{e.model}@{e.R} seed {e.seed}"
        columns += [col, f"{col} p"]
        for f, y, p, prob in zip(rec["photos"], rec["y_true"], rec["y_pred"], rec["probability"]):
            row = by_file.setdefault(
                f, {"file": f, "label": CANONICAL[y], "study image": study.get(f, ""), "hand": hands.get(f, "")}
            )
            row |= {col: label_name(p), f"{col} p": "" if prob is None else prob}
    write_csv_atomic(path, columns, sorted(by_file.values(), key=lambda row: row["file"]))
    return path


def photo_hands(ctx: Context, name: str) -> dict[str, str]:
    """Each photo's hand detection, as predictions.csv says it: the try that found the hand
    (study.core.config.HandsConfig.tries), or "none"."""
    tries = [t[0] for t in ctx.preset.hands.tries]
    out = {}
    for split, index in read_index(open_builder(ctx, name)).items():
        tried = store.load_hands(ctx, name, split)["tried"]
        for f, k in zip(index["file"], tried):
            out[f.decode() if isinstance(f, bytes) else str(f)] = tries[k] if k >= 0 else "none"
    return out


def format_table(rows: list[dict]) -> str:
    """The scores of the folder as `table.csv` holds them (4 decimals), one line per model and r."""
    lines = [f"{'model':<30}{'r':>5}{'n':>6}  accuracy (95% CI)           macro-F1"]
    for row in rows:
        lines.append(
            f"{row['train_dataset'] + '@' + str(row['train_res']):<30}{row['eval_res']:>5}{row['n']:>6}  "
            f"{row['accuracy']:.4f} ({row['accuracy_ci_low']:.4f}-{row['accuracy_ci_high']:.4f})   "
            f"{row['macro_f1']:.4f}"
        )
    return "\n".join(lines)
