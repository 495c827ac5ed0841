"""The report's inputs: a results folder read back, and checked to hold every unit the plan needs.

The preset is the one `prepare` recorded in datasets.json; what the table, the models and the
diagnostics must hold comes from the same plan the stages computed them by (study.core.plan),
and every file is found through study.core.store. Reads JSON and CSV only.
"""

from __future__ import annotations

from pathlib import Path

from study.core import store
from study.core.context import Context
from study.core.errors import MissingResults
from study.core.names import parse


def open_results(out_dir: Path) -> Context:
    """The context of a results folder, with the preset its datasets were prepared for."""
    return Context.of_results(out_dir)


def check_complete(ctx: Context) -> tuple[list[dict], list[dict]]:
    """The table's rows and the separability rows, or MissingResults naming each missing unit."""
    plan, results = ctx.plan, ctx.results
    missing = []
    for n, R, seed in plan.model_seeds:
        files = store.model_files(ctx, n, R, seed)
        if not files.marker.is_file() or not files.history.is_file():
            missing.append(f"model {n}@{R} seed {seed}")
    rows = store.read_table(results.table) if results.table.is_file() else []
    have = {(r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"]) for r in rows}
    missing += [f"table row {t}@{R} on {e} at r={r}" for t, R, e, r in plan.table_rows if (t, R, e, r) not in have]
    separability = store.read_separability(results.separability)
    have = {(r["dataset_a"], r["dataset_b"], r["R"], r["r"]) for r in separability}
    missing += [
        f"separability of {a} and {b} at R={R}, r={r}"
        for a, b, R, r in plan.separability_rows
        if (a, b, R, r) not in have
    ]
    if not results.gradcam_overview().is_file():
        missing.append(f"the Grad-CAM overview ({results.gradcam_overview()}, made by evaluate)")
    if plan.separability_pairs and not results.cues.is_file():
        missing.append(f"the trivial-cue checks ({results.cues}, made by evaluate)")
    if plan.gradcam_models() and not results.hand_share.is_file():
        missing.append(f"Grad-CAM's share of heat on the hand ({results.hand_share}, made by evaluate)")
    if missing:
        head = "\n  ".join(missing[:30])
        more = f"\n  ... and {len(missing) - 30} more" if len(missing) > 30 else ""
        raise MissingResults(
            f"results in {results.root} are incomplete; nothing was written. Missing:\n  {head}{more}\n"
            f"Run `python -m study.run all --preset {ctx.preset.name}` to complete them."
        )
    return rows, separability


def cell_evals(ctx: Context, train: str, R: int, eval_ds: str, r: int) -> list[dict]:
    """A table cell's evaluation records, one per seed (study.core.store.eval_records)."""
    return store.eval_records(ctx, train, R, eval_ds, r)


def kind(row: dict) -> str:
    """single, multi-source, few-shot, ablation, augmented or fine-tuned: what the row's model was trained on."""
    return parse(row["train_dataset"]).kind


def figure_rows(rows: list[dict]) -> list[dict]:
    """The models the comparison figures draw: one-dataset and multi-source (few-shot models
    have their own figure, the ablation its own table)."""
    return [r for r in rows if kind(r) in ("single", "multi-source")]
