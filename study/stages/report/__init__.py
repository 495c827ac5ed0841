"""`report`: tables, figures and the paper, from result files only. Reads JSON and CSV; never imports jax.

`run_report(out_dir, paper_dir)` reads `results/<preset>/` (table.csv, datasets.json,
weights.json, the models' histories and the evaluations), checks that every unit the plan
needs is there (otherwise it lists what is missing and writes nothing), and writes:
`table.md` and `paper_numbers.json` beside the results; each model's `curves.png` in its
folder, where not drawn yet (a model trained again has a new folder); `paper/tables/*.tex`;
`paper/figures/*.png` and `.pdf`, each by the function of the same name; and
`paper/paper.md` from `paper_template.md` beside this file, every number filled in from
those files; and `paper/paper.pdf`, the same text rendered by Typst (`pdf`). The parts: reading
and checking (`results`), tables (`tables`), figures (`figures`),
the paired differences (`differences`) and the paper's numbers and text (`paper`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from study.core.context import Context
from study.core.files import write_json_atomic, write_text_atomic
from study.core.store import PAPER, PaperFiles
from study.core.units import is_done, listed, mark_done
from study.stages.report.figures import (
    accuracy_vs_resolution,
    cross_domain_confusions,
    cross_domain_heatmap,
    effects,
    few_shot,
    gradcam,
    model_curves,
    per_letter_f1,
    training_curves,
)
from study.stages.report.paper import paper_numbers, paper_text
from study.stages.report.pdf import write_pdf
from study.stages.report.results import check_complete, open_results
from study.stages.report.tables import table_latex, table_markdown

# Bump when the report changes what it writes, so that a report of unchanged results is redone.
REPORT_VERSION = 14  # 9: adapted models (effects, tables, the wording "without target labels"); 10: heat on the
# hand; 11: the trivial cues; 12: hand crops and the landmark classifier; 13: the abstract, compact tables,
# simultaneous intervals, the PDF; 14: each model's curves.png, drawn here instead of by training
FIGURES = (
    training_curves,
    accuracy_vs_resolution,
    cross_domain_heatmap,
    per_letter_f1,
    cross_domain_confusions,
    few_shot,
    effects,
    gradcam,
)


def run_stage(ctx: Context) -> list[Path]:
    """The `report` command: the paper of `ctx.out_dir`'s results in `ctx.paper_folder`."""
    return run_report(ctx.out_dir, ctx.paper_folder, ctx.echo)


def run_report(out_dir: Path, paper_dir: Path = PAPER, echo=print) -> list[Path]:
    """Write the tables, figures and paper of the results in `out_dir`; nothing if incomplete."""
    ctx = open_results(Path(out_dir))
    results, paper = ctx.results, PaperFiles(Path(paper_dir))
    rows, separability = check_complete(ctx)
    info = {"preset": ctx.preset, "prepared": ctx.prepared, "separability": separability}
    template = (Path(__file__).parent / "paper_template.md").read_text()
    # The report's inputs, by content: unchanged inputs and present outputs mean nothing to do.
    h = hashlib.sha256(template.encode())
    for p in results.report_inputs():
        h.update(p.read_bytes())
    spec = {"kind": "report", "version": REPORT_VERSION, "inputs": h.hexdigest()}
    # Done: the same inputs, every file it wrote intact, and those files are where this run
    # puts them (another --paper-dir is other outputs).
    outputs = [results.table_md, results.paper_numbers, paper.md, paper.pdf, paper.comparison]
    outputs += [paper.figure(f.__name__, e) for f in FIGURES for e in ("png", "pdf")]
    if is_done(results.report, spec, force=True) and {p.resolve() for p in outputs} <= listed(results.report):
        echo(f"report: up to date ({paper.md})")
        return []
    drawn = model_curves(ctx, ctx.plan.model_seeds)  # files of the models' folders, not of the report's
    written = []
    write_text_atomic(results.table_md, table_markdown(rows, info["preset"].eval.confidence, info["separability"]))
    paper.tables.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paper.comparison, table_latex(rows))
    written += [results.table_md, paper.comparison]
    written += training_curves(ctx, ctx.plan.models, ctx.preset.seeds, paper)
    written += accuracy_vs_resolution(ctx, rows, paper)
    written += cross_domain_heatmap(rows, paper)
    written += per_letter_f1(ctx, rows, paper)
    written += cross_domain_confusions(ctx, rows, paper)
    written += few_shot(ctx, rows, paper)
    nums = paper_numbers(info, rows, ctx)
    written += effects(nums["effects"], paper)
    written += gradcam(ctx, paper)
    write_json_atomic(results.paper_numbers, nums)
    write_text_atomic(paper.md, paper_text(info, rows, nums, template))
    written += [results.paper_numbers, paper.md, write_pdf(paper)]
    mark_done(results.report, spec, written)
    curves = f"; {len(drawn)} models' {drawn[0].name}" if drawn else ""
    echo(f"report: {len(written)} files ({results.table_md}, {paper.md}, figures in {paper.figures}){curves}")
    return written + drawn
