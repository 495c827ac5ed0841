"""`score`: every trained model of a preset on a folder of one's own photos, at every r.

The folder is a class-per-folder photo set (`<dir>/<class>/*` or `<dir>/<split>/<class>/*`,
class names matched case-insensitively; unknown class folders, unreadable files and links to
files outside the folder are listed and skipped). It is prepared like any dataset, but every
image is a test image. The features and evaluation stages then score it (study.run); results
go to `results/<preset>/score/<name>/`: the dataset summary, one evaluation JSON per model and
degradation, and `table.csv`, which is also printed. It needs the trained models (committed
for the `cpu` preset) and the ImageNet weights, not the study's datasets.
"""

from __future__ import annotations

import re
from pathlib import Path

from study import store
from study.context import Context
from study.datasets import DATASETS, DatasetError, DatasetSpec
from study.datasets.builders import AslFolder
from study.datasets.build import build_dataset, format_summary, summarize
from study.files import write_json_atomic


def prepare_folder(ctx: Context, folder: Path, name: str | None = None) -> str:
    """Check the models, prepare the folder as a test-only dataset and register it in `ctx`;
    returns its name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder (expected <dir>/<class>/<image>)")
    name = name or re.sub(r"[^a-z0-9_]+", "_", folder.resolve().name.lower()).strip("_") or "photos"
    if name in DATASETS:
        raise ValueError(f"--name {name!r} is one of the study's datasets; choose another name")
    # The models evaluate scores a folder with: not the few-shot ones or the ablation.
    models = store.scorable(ctx, ctx.echo)
    if not models:
        raise DatasetError(f"no trained models in {ctx.out_dir}: run `python -m study.run all --preset {ctx.preset.name}` first")
    for m in models:
        store.model_record(ctx, *m)  # each model's files there and intact, or an error naming them
    spec = DatasetSpec(name, folder.name, AslFolder, score_only=True)
    builder = build_dataset(spec, ctx.preset, folder, ctx.tfds_dir, ctx.force, ctx.echo)
    summary = summarize(builder)
    ctx.echo(format_summary(name, summary))
    write_json_atomic(results_dir(ctx, name) / "dataset.json", summary)
    ctx.extra[name] = spec
    ctx.prepared["datasets"][name] = summary
    return name


def results_dir(ctx: Context, name: str) -> Path:
    return ctx.out_dir / "score" / name


def feature_units(ctx: Context, name: str) -> list[store.Unit]:
    """The features units that scoring the folder `name` needs (frozen backbone)."""
    if ctx.preset.train.finetune:
        return []
    return [store.Unit(name, split, R, r) for R in ctx.preset.train_resolutions
            for split in ctx.preset.eval.splits if split in ctx.splits(name)
            for r in ctx.preset.eval_resolutions_for(R)]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<30}{'r':>5}{'n':>6}  accuracy (95% CI)        macro-F1"]
    for row in rows:
        lines.append(
            f"{row['train_dataset'] + '@' + str(row['train_res']):<30}{row['eval_res']:>5}{row['n']:>6}  "
            f"{row['accuracy']:.3f} ({row['accuracy_ci_low']:.3f}-{row['accuracy_ci_high']:.3f})   {row['macro_f1']:.3f}"
        )
    return "\n".join(lines)
