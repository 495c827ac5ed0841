"""`score`: every trained model of a preset on a folder of one's own photos, at every r.

The folder is a class-per-folder photo set (`<dir>/<class>/*` or `<dir>/<split>/<class>/*`,
class names matched case-insensitively; unknown class folders are listed and ignored). It is
prepared like any dataset, but every image is a test image. Results go to
`results/<preset>/score/<name>/`: the dataset summary, one evaluation JSON per model and
degradation, and `table.csv`, which is also printed.
"""

from __future__ import annotations

import re
from pathlib import Path

from study import evaluate, features, train
from study.context import Context
from study.datasets import DATASETS, DatasetError, DatasetSpec
from study.datasets.builders import AslFolder
from study.datasets.prepare import _build, format_summary, summarize
from study.files import write_json_atomic


def score_folder(ctx: Context, folder: Path, name: str | None = None) -> list[dict]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder (expected <dir>/<class>/<image>)")
    name = name or re.sub(r"[^a-z0-9_]+", "_", folder.resolve().name.lower()).strip("_") or "photos"
    if name in DATASETS:
        raise ValueError(f"--name {name!r} is one of the study's datasets; choose another name")
    models = train.units(ctx)
    if not models or not all((train.model_dir(ctx, *m) / "unit.json").is_file() for m in models):
        raise DatasetError(f"no trained models in {ctx.out_dir}: run `python -m study.run all --preset {ctx.preset.name}` first")
    spec = DatasetSpec(name, folder.name, AslFolder, score_only=True)
    builder = _build(spec, ctx.preset, folder, ctx.tfds_dir, ctx.force, ctx.echo)
    summary = summarize(builder)
    ctx.echo(format_summary(name, summary))
    out = ctx.out_dir / "score" / name
    write_json_atomic(out / "dataset.json", summary)
    ctx.extra[name] = spec
    ctx.prepared["datasets"][name] = summary
    todo = [(name, split, R, r, False) for R in ctx.preset.train_resolutions
            for split in ctx.preset.eval.splits if split in summary["splits"]
            for r in features.eval_resolutions(ctx.preset, R)]
    features.run_stage(ctx, todo, out / "features.json")
    rows = evaluate.run_stage(ctx, [name], out / "eval")
    ctx.echo(format_table(rows))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<30}{'r':>5}{'n':>6}  accuracy (95% CI)        macro-F1"]
    for row in rows:
        lines.append(
            f"{row['train_dataset'] + '@' + str(row['train_res']):<30}{row['eval_res']:>5}{row['n']:>6}  "
            f"{row['accuracy']:.3f} ({row['accuracy_ci_low']:.3f}-{row['accuracy_ci_high']:.3f})   {row['macro_f1']:.3f}"
        )
    return "\n".join(lines)
