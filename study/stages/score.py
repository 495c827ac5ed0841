"""`score`: every trained model of a preset on a folder of one's own photos, at every r.

The folder is a class-per-folder photo set (`<dir>/<class>/*` or `<dir>/<split>/<class>/*`,
class names matched case-insensitively; unknown class folders, unreadable files and links to
files outside the folder are listed and skipped). It is prepared like any dataset, but every
image is a test image (`prepare_folder`, which returns the context with the folder among its
datasets). The features and evaluation stages then score it (`features.run_folder`,
`evaluate.run_folder`; the command line lists the sequence), and `print_table` shows the
result. Everything goes to `results/<preset>/score/<name>/` (study.core.store.score_dir): the
dataset summary, one evaluation JSON per model and degradation, and `table.csv`. It needs the
trained models (committed for the `cpu` preset) and the ImageNet weights, not the study's
datasets.
"""

from __future__ import annotations

import re
from pathlib import Path

from study.core import store
from study.core.context import Context
from study.core.errors import ConfigError, DatasetError
from study.core.files import write_json_atomic
from study.datasets import DATASETS, DatasetSpec
from study.datasets.build import build_dataset, format_summary, summarize


def prepare_folder(ctx: Context) -> Context:
    """Check the models, prepare `ctx.folder` as a test-only dataset; the context that scores it."""
    folder = Path(ctx.folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder (expected <dir>/<class>/<image>)")
    name = ctx.folder_name or re.sub(r"[^a-z0-9_]+", "_", folder.resolve().name.lower()).strip("_") or "photos"
    if name in DATASETS:
        raise ConfigError(f"--name {name!r} is one of the study's datasets; choose another name")
    # The models evaluate scores a folder with: not the few-shot ones or the ablation.
    models = store.scorable(ctx, ctx.echo)
    if not models:
        raise DatasetError(f"no trained models in {ctx.out_dir}: run `python -m study.run all --preset {ctx.preset.name}` first")
    for m in models:
        store.model_record(ctx, *m)  # each model's files there and intact, or an error naming them
    spec = DatasetSpec(name, folder.name, "AslFolder", score_only=True)
    builder = build_dataset(spec, ctx.preset, folder, ctx.tfds_dir, ctx.force, ctx.echo)
    summary = summarize(builder)
    ctx.echo(format_summary(name, summary))
    write_json_atomic(store.score_dir(ctx, name) / "dataset.json", summary)
    return ctx.with_folder(name, spec, summary)


def print_table(ctx: Context) -> None:
    """The scores of the folder as `table.csv` holds them (4 decimals), one line per model and r."""
    ctx.echo(format_table(store.read_table(store.score_dir(ctx, ctx.scoring) / "table.csv")))


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<30}{'r':>5}{'n':>6}  accuracy (95% CI)           macro-F1"]
    for row in rows:
        lines.append(
            f"{row['train_dataset'] + '@' + str(row['train_res']):<30}{row['eval_res']:>5}{row['n']:>6}  "
            f"{row['accuracy']:.4f} ({row['accuracy_ci_low']:.4f}-{row['accuracy_ci_high']:.4f})   {row['macro_f1']:.4f}"
        )
    return "\n".join(lines)
