"""`score`: every trained model of a preset on a folder of one's own photos, each at its R.

The folder is a class-per-folder photo set (`<dir>/<class>/*` or `<dir>/<split>/<class>/*`,
class names matched case-insensitively; unknown class folders, unreadable files and links to
files outside the folder are listed and skipped). It is prepared like any dataset, but every
image is a test image (`prepare_folder`, which returns the context with the folder among its
datasets). The hands, features and evaluation stages then score it (`hands.run_folder`,
`features.run_folder`, `evaluate.run_folder`; the command line lists the sequence), at r = R
(at every r with `--every-r`), and `report_folder` gives each model's answer to each photo:
the label of highest probability averaged over its seeds (`Answers`). Everything goes to
`results/<preset>/score/<name>/` (study.core.store.ScoreFiles; docs/running.md, "What score
writes", explains every column): `dataset.json` (the summary), `skipped.csv` (each file left
out and why), one evaluation JSON per model, seed and r under `eval/`, `table.csv` (the
study's way: the mean over seeds), `answers.csv` (each model's accuracy of its answers,
printed, the best model by the study's own table first) and `predictions.csv` (one row per
photo: its label, its split if it is one of the study's own images, the try of the hand
detector that found its hand or "none", each model's answer, then each seed's). It needs the
trained models (committed for the `cpu` preset, but for the fine-tuned blocks 5, named last)
and the ImageNet weights, not the study's datasets.

A model chooses among every label it knows, so a folder of a few letters is scored honestly
(choosing among the folder's letters only would score a one-letter folder 1.000 whatever the
photos); `--folder-labels-only` restricts the choice to the folder's labels, the rule of the
study's cross-domain table, for a set known to cover exactly its labels.

A photo that is, byte for byte, an image of the study's datasets (`images.csv`, which
`prepare` writes and the study of record commits) is named with its split: a model scored on
photos it was trained on scores high for that reason, and the output says which models saw them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from study.core import store
from study.core.context import Context
from study.core.errors import ConfigError, DatasetError
from study.core.files import write_csv_atomic, write_json_atomic
from study.core.labels import CANONICAL, NO_HAND_NAME, label_name
from study.core.names import FOLDER_NAME_RULE, FT5, folder_results_name, parse
from study.core.stats import bootstrap_counts, interval
from study.core.units import readable_record
from study.datasets import DATASETS, DatasetSpec, open_builder
from study.datasets.build import build_dataset, format_summary, image_listing, read_index, summarize


def prepare_folder(ctx: Context) -> Context:
    """Check the models, prepare `ctx.folder` as a test-only dataset; the context that scores it."""
    folder = Path(ctx.folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder (expected <dir>/<class>/<image>)")
    if not any(files for _, _, files in os.walk(folder)):
        raise DatasetError(f"{folder} holds no files (expected <dir>/<class>/<image>, one folder per letter)")
    name = folder_results_name(folder.resolve().name, ctx.folder_name)
    if name is None:
        raise ConfigError(
            f"--name {ctx.folder_name!r}: a name of {FOLDER_NAME_RULE}; the folder's results go to "
            f"{store.score_files(ctx, '<name>').root}"
        )
    if name in DATASETS:
        raise ConfigError(f"--name {name!r} is one of the study's datasets; choose another name")
    # The models evaluate scores a folder with: not the few-shot or adapted ones, nor the ablation.
    models = store.scorable(ctx)
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
    if n < 2:  # the flag would change nothing: do not suggest it
        return "the models choose among every label they know; the folder has one"
    return (
        f"the models choose among every label they know; the folder has {n} (--folder-labels-only "
        "would restrict them to those)"
    )


def report_folder(ctx: Context) -> list[Path]:
    """Each model's answers (`answers.csv`, printed), predictions.csv, the path of every file
    written, and last the models left out (their fine-tuned block 5 is not here)."""
    out = store.score_files(ctx, ctx.scoring)
    answers = model_answers(ctx, ctx.scoring)
    rows = answer_rows(ctx, answers)
    write_csv_atomic(out.answers, ANSWER_COLUMNS, rows)
    write_predictions(ctx, out.predictions, answers)
    ctx.echo(format_answers(ctx, rows))
    if ctx.every_r:  # the resolution sweep, as table.csv holds it
        ctx.echo(format_table(store.read_table(out.table)))
    found = json.loads(out.dataset.read_text()).get("study_images")
    if found and found["matches"]:
        ctx.echo(study_images_note(ctx, found))
    written = [out.dataset, out.skipped, out.eval, out.table, out.answers, out.predictions]
    ctx.echo("written:\n" + "\n".join(f"  {p}" for p in written))
    note = absent_models_note(ctx)
    if note:
        ctx.echo(note)
    return written


@dataclasses.dataclass(frozen=True)
class Answers:
    """A model's answer for each photo of a folder, at r = R: the label of highest probability
    averaged over its seeds (each seed's probabilities of the labels it chooses among), and that
    mean probability; for a landmark model's photo without a hand, `nothing` where the model
    chooses among it, else "(no hand)", and no probability. `records`: each seed's evaluation
    records (one per split of the folder), as evaluate wrote them."""

    model: str
    R: int
    seeds: tuple[int, ...]
    photos: tuple[str, ...]
    truth: tuple[str, ...]
    label: tuple[str, ...]
    probability: tuple[float | None, ...]
    records: dict[int, list[dict]]

    @property
    def column(self) -> str:
        """The model's columns in predictions.csv: `<model>@<R>` and `<model>@<R> p`."""
        return f"{self.model}@{self.R}"

    @property
    def correct(self) -> np.ndarray:
        """Whether each photo's answer is its label."""
        return np.asarray(self.label) == np.asarray(self.truth)


def model_answers(ctx: Context, name: str) -> list[Answers]:
    """Every scored model's answers on the folder `name` (Answers), in the plan's order."""
    out = store.score_files(ctx, name)
    records: dict[tuple[str, int], dict[int, list[dict]]] = {}
    for e in ctx.plan.evaluations(store.scorable(ctx), [name], every_r=False):
        rec = json.loads(out.evaluation(*e).read_text())
        records.setdefault((e.model, e.R), {}).setdefault(e.seed, []).append(rec)
    return [_answers(model, R, by_seed) for (model, R), by_seed in records.items()]


def _answers(model: str, R: int, by_seed: dict[int, list[dict]]) -> Answers:
    """A model's Answers from its seeds' records (each seed's splits in the same order)."""
    first = by_seed[min(by_seed)]
    photos = [f for rec in first for f in rec["photos"]]
    truth = [CANONICAL[y] for rec in first for y in rec["y_true"]]
    choose = first[0]["choose_from"]
    probs = [[row for rec in recs for row in rec["probabilities"]] for recs in by_seed.values()]
    labels, probability = [], []
    for i in range(len(photos)):
        rows = [seed_rows[i] for seed_rows in probs]
        if rows[0] is None:  # no hand found: no probability made the answer
            labels.append("nothing" if "nothing" in choose else NO_HAND_NAME)
            probability.append(None)
            continue
        mean = np.mean(rows, axis=0)
        labels.append(choose[int(np.argmax(mean))])
        probability.append(round(float(mean.max()), 4))
    return Answers(model, R, tuple(by_seed), tuple(photos), tuple(truth), tuple(labels), tuple(probability), by_seed)


# answers.csv: one row per model (docs/running.md, "What score writes").
ANSWER_COLUMNS = ["model", "R", "seeds", "photos", "accuracy", "ci_low", "ci_high", "study_across"]
# Fewer photos than this get no interval: a bootstrap over a handful of photos says nothing
# (4 photos all right or all wrong give an interval of zero width).
MIN_PHOTOS_FOR_INTERVAL = 30


def answer_rows(ctx: Context, answers: list[Answers]) -> list[dict]:
    """answers.csv's rows: each model's accuracy on the folder, of its seeds' mean answer, with a
    bootstrap interval from MIN_PHOTOS_FOR_INTERVAL photos; its accuracy across datasets in the
    study (`study_across`, study_across); the best by the study first, never by the folder."""
    across = study_across(ctx)
    rows = []
    for a in answers:
        n, correct = len(a.photos), a.correct
        low = high = ""
        if n >= MIN_PHOTOS_FOR_INTERVAL:
            w = bootstrap_counts(n, ctx.preset.eval.bootstrap, seed=0)
            low, high = (round(v, 4) for v in interval(w @ correct / n, ctx.preset.eval.confidence))
        rows.append(
            {
                "model": a.model,
                "R": a.R,
                "seeds": len(a.seeds),
                "photos": n,
                "accuracy": round(float(correct.mean()), 4) if n else "",
                "ci_low": low,
                "ci_high": high,
                "study_across": "" if (a.model, a.R) not in across else round(across[a.model, a.R], 4),
            }
        )
    return sorted(rows, key=lambda row: (row["study_across"] == "", -(row["study_across"] or 0)))


def study_across(ctx: Context) -> dict[tuple[str, int], float]:
    """Each model's accuracy across datasets in the study (its table.csv): the mean over the
    test splits of the datasets it never trained on, at r = R. A model trained on every dataset
    (their union) has none."""
    if not ctx.results.table.is_file():
        return {}
    scores: dict[tuple[str, int], list[float]] = {}
    for row in store.read_table(ctx.results.table):
        model, R, eval_ds = row["train_dataset"], row["train_res"], row["eval_dataset"]
        if row["eval_res"] == R and ":" not in eval_ds and eval_ds not in parse(model).sources:
            scores.setdefault((model, R), []).append(row["accuracy"])
    return {key: float(np.mean(v)) for key, v in scores.items()}


def format_answers(ctx: Context, rows: list[dict]) -> str:
    """The printed table: one line saying what the numbers are, then one row per model."""
    conf = round(ctx.preset.eval.confidence * 100)
    lines = [
        "each model's answer to a photo is the label of highest probability averaged over its seeds, at its own "
        "resolution R (pixels; 0: a landmark model, which reads the hand's landmarks); accuracy: the share of the "
        f"folder's photos answered right, with a {conf}% interval from {MIN_PHOTOS_FOR_INTERVAL} photos; "
        f"'study across': the model's accuracy across datasets in the study ({ctx.results.table}), best first",
        f"{'model':<34}{'R':>4}{'seeds':>6}{'photos':>7}{'accuracy':>10}  {f'{conf}% interval':<15}"
        f"{'study across':>12}",
    ]
    for row in rows:
        ci = f"{row['ci_low']:.3f}-{row['ci_high']:.3f}" if row["ci_low"] != "" else "-"
        acc = f"{row['accuracy']:.3f}" if row["accuracy"] != "" else "-"
        across = f"{row['study_across']:.3f}" if row["study_across"] != "" else "-"
        lines.append(
            f"{row['model']:<34}{row['R']:>4}{row['seeds']:>6}{row['photos']:>7}{acc:>10}  {ci:<15}{across:>12}"
        )
    return "\n".join(lines)


def absent_models_note(ctx: Context) -> str | None:
    """The models left out because their files are not here (store.absent_scorable), the
    command that makes them and its time (their training's, from their records), or None."""
    absent = store.absent_scorable(ctx)
    if not absent:
        return None
    first_seed = {(name, R): seed for name, R, seed in reversed(absent)}
    models = list(dict.fromkeys((name, R) for name, R, _ in absent))
    seconds = 0.0
    for (name, R), seed in first_seed.items():  # the seeds of a model train together: one record gives the time
        marker = store.model_files(ctx, name, R, seed).marker
        rec = readable_record(marker) if marker.is_file() else None
        seconds += (rec or {}).get("seconds", 0.0)
    took = f"; their training took {seconds / 60:.0f} minutes in the study of record" if seconds else ""
    tuned = [f"{n}@{R}" for n, R in models if parse(n).remedy == FT5]
    heads = [f"{n}@{R}" for n, R in models if parse(n).remedy != FT5]
    parts = ([f"{', '.join(tuned)} (their fine-tuned block 5, 28 MB a seed, is not committed)"] if tuned else []) + (
        [f"{', '.join(heads)} (their heads are not here)"] if heads else []
    )
    return (
        f"not scored: {'; '.join(parts)}. `{store.command(ctx, 'train')}` makes them after prepare, hands "
        f"and features on the study's datasets{took}"
    )


def write_predictions(ctx: Context, path: Path, answers: list[Answers]) -> Path:
    """One row per photo of the folder: its file and label, its split if it is one of the
    study's images, its hand detection; then each model's answer (the seeds' mean, `Answers`)
    and its probability; then each seed's predicted label and probability (at r = R). Blank
    where a model does not know the photo's label (it is not scored on it)."""
    name = ctx.scoring
    out = store.score_files(ctx, name)
    found = json.loads(out.dataset.read_text()).get("study_images") or {"matches": []}
    study = {m["file"]: f"{m['dataset']} {m['split']}" for m in found["matches"]}
    hands = photo_hands(ctx, name)
    columns, by_file = ["file", "label", "study image", "hand"], {}

    def row(f: str, label: str) -> dict:
        return by_file.setdefault(
            f, {"file": f, "label": label, "study image": study.get(f, ""), "hand": hands.get(f, "")}
        )

    for a in answers:
        columns += [a.column, f"{a.column} p"]
        for f, y, label, prob in zip(a.photos, a.truth, a.label, a.probability):
            row(f, y).update({a.column: label, f"{a.column} p": "" if prob is None else prob})
    for a in answers:
        for seed, recs in a.records.items():
            col = f"{a.column} seed {seed}"
            columns += [col, f"{col} p"]
            for rec in recs:
                for f, y, pred, prob in zip(rec["photos"], rec["y_true"], rec["y_pred"], rec["probability"]):
                    row(f, CANONICAL[y]).update({col: label_name(pred), f"{col} p": "" if prob is None else prob})
    write_csv_atomic(path, columns, sorted(by_file.values(), key=lambda r: r["file"]))
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
