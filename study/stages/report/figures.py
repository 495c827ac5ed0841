"""The paper's figures, one function each, named as the file it writes (`<paper>/figures/<name>.png`
and `.pdf`). Each reads the table's rows and, through study.core.store, the result files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from study.core import store
from study.core.context import Context
from study.core.files import write_bytes_atomic
from study.core.labels import CANONICAL
from study.core.names import parse
from study.core.plots import curves, plot_curves, save_figure  # before pyplot: it selects matplotlib's Agg backend
from study.core.store import PaperFiles
from study.stages.report.differences import PER_PANEL, QUESTION_TITLES, ordered_effects
from study.stages.report.results import cell_evals, figure_rows, kind

import matplotlib.pyplot as plt  # noqa: E402  isort:skip


def training_curves(ctx: Context, models: list[tuple], seeds, paper: PaperFiles) -> list[Path]:
    """Loss and accuracy per epoch of every model but the few-shot, adapted, both-views and
    augmented-landmark ones (all seeds overlaid), one row per model; each of those has its own curves.png."""
    models = [
        (n, R)
        for n, R in models
        if parse(n).kind not in ("few-shot", "adapted", "both views") and not parse(n).landmark_views
    ]
    per_row = 3  # models a row, each a pair of panels, so that the figure stays readable at page width
    rows = -(-len(models) // per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(16, 2.6 * rows), squeeze=False)
    for ax in axes.flat[2 * len(models) :]:
        ax.axis("off")
    for i, (name, R) in enumerate(models):
        pair = axes[i // per_row, 2 * (i % per_row) : 2 * (i % per_row) + 2]
        for k, seed in enumerate(seeds):
            h = store.history(ctx, name, R, seed)
            curves(pair, h, alpha=0.8 if k == 0 else 0.35, legend=k == 0 and i == 0)
        pair[0].set_title(f"{name}@{R}: loss", fontsize=9)
        pair[1].set_title("accuracy", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, paper.figures, "training_curves")


def model_curves(ctx: Context, models: list[tuple[str, int, int]]) -> list[Path]:
    """Each model's own loss and accuracy curves (`curves.png` beside its history.json), where
    not drawn yet: training a model again empties its folder, so a curves file present is of
    the history beside it."""
    out = []
    for name, R, seed in models:
        files = store.model_files(ctx, name, R, seed)
        if not files.curves.is_file():
            plot_curves(store.history(ctx, name, R, seed), files.curves, title=f"{name}@{R} seed {seed}")
            out.append(files.curves)
    return out


def accuracy_vs_resolution(ctx: Context, rows: list[dict], paper: PaperFiles) -> list[Path]:
    """Accuracy against test resolution r, one panel per test set, one line per model; 95% CIs."""
    main = figure_rows(rows)
    evals = list(dict.fromkeys(r["eval_dataset"] for r in main))
    models = list(dict.fromkeys((r["train_dataset"], r["train_res"]) for r in main))
    fig, axes = plt.subplots(1, len(evals), figsize=(4.2 * len(evals), 3.6), squeeze=False, sharey=True)
    for ax, e in zip(axes[0], evals):
        chance = []
        for k, (t, R) in enumerate(models):
            pts = sorted(
                (r["eval_res"], r)
                for r in main
                if r["eval_dataset"] == e and (r["train_dataset"], r["train_res"]) == (t, R)
            )
            if not pts:
                continue
            x = [p for p, _ in pts]
            y = np.array([r["accuracy"] for _, r in pts])
            err = np.array(
                [[r["accuracy"] - r["accuracy_ci_low"], r["accuracy_ci_high"] - r["accuracy"]] for _, r in pts]
            ).T
            ax.errorbar(
                x,
                y,
                yerr=err,
                marker="o",
                ms=3,
                capsize=2,
                label=f"{t}@{R}",
                color=f"C{k}",
                linestyle="-" if e.split(":")[0] in parse(t).sources else "--",
            )
            chance.append(1 / len(cell_evals(ctx, t, R, e, pts[0][0])[0]["labels"]))
        if chance:
            ax.axhline(max(chance), color="grey", lw=1, ls=":", label="chance")
        ax.set_xscale("log", base=2)
        ticks = sorted({r["eval_res"] for r in main if r["eval_dataset"] == e})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set(title=f"test set: {e}", xlabel="test resolution r (px, log scale)", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Accuracy against test resolution (solid: in-domain, dashed: cross-domain)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, paper.figures, "accuracy_vs_resolution")


def cross_domain_heatmap(rows: list[dict], paper: PaperFiles) -> list[Path]:
    """Accuracy of each model (rows: one-dataset, multi-source and the remedies without target
    data) on each test set (columns), at each model's own R; a panel per R holds only the
    models trained at it. The colours grow with the square root of accuracy, so that the
    cross-domain cells (0.05-0.2) differ visibly; every cell is also written out."""
    from matplotlib.colors import PowerNorm

    kinds = ("single", "multi-source", "augmented", "fine-tuned", "hand crop", "both views")
    main = [r for r in rows if kind(r) in kinds and r["eval_res"] == r["train_res"]]
    Rs = sorted({r["train_res"] for r in main})
    evals = list(dict.fromkeys(r["eval_dataset"] for r in main))
    trains = {R: list(dict.fromkeys(r["train_dataset"] for r in main if r["train_res"] == R)) for R in Rs}
    n = max(len(t) for t in trains.values())
    fig, axes = plt.subplots(
        1,
        len(Rs),
        figsize=(1.0 + len(Rs) * (2.4 + 1.2 * len(evals)), 1.6 + 0.42 * n),
        squeeze=False,
        layout="constrained",
    )
    norm = PowerNorm(0.5, vmin=0, vmax=1)
    for ax, R in zip(axes[0], Rs):
        m = np.full((len(trains[R]), len(evals)), np.nan)
        for r in main:
            if r["train_res"] == R:
                m[trains[R].index(r["train_dataset"]), evals.index(r["eval_dataset"])] = r["accuracy"]
        im = ax.imshow(m, norm=norm, cmap="viridis", aspect="auto")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if not np.isnan(m[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.2f}",
                        ha="center",
                        va="center",
                        color="white" if m[i, j] < 0.5 else "black",
                        fontsize=8,
                    )
        ax.set_xticks(range(len(evals)), evals, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(trains[R])), trains[R], fontsize=8)
        ax.set(title=f"R = r = {R} px", xlabel="test set", ylabel="trained on" if R == Rs[0] else "")
    fig.colorbar(
        im,
        ax=axes[0].tolist(),
        label="accuracy (square-root scale)",
        shrink=0.8,
        ticks=[0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1],
    )
    return save_figure(fig, paper.figures, "cross_domain_heatmap")


def per_letter_f1(ctx: Context, rows: list[dict], paper: PaperFiles) -> list[Path]:
    """F1 per label, in-domain and on each other test set (test splits, r = R, mean over seeds)."""
    main = [r for r in figure_rows(rows) if ":" not in r["eval_dataset"]]
    models = list(dict.fromkeys((r["train_dataset"], r["train_res"]) for r in main))
    fig, axes = plt.subplots(len(models), 1, figsize=(11, 2.4 * len(models)), squeeze=False)
    for ax, (t, R) in zip(axes[:, 0], models):
        for k, e in enumerate(dict.fromkeys(r["eval_dataset"] for r in main)):
            evs = cell_evals(ctx, t, R, e, R)
            if not evs:
                continue
            f1 = [
                np.mean([ev["report"].get(c, {}).get("f1-score", np.nan) for ev in evs])
                if c in evs[0]["report"]
                else np.nan
                for c in CANONICAL
            ]
            own = e in parse(t).sources  # a union's sources are all its own
            ax.plot(
                np.arange(len(CANONICAL)) + 0.12 * (k - 1),
                f1,
                ls="none",
                marker="o" if own else "x",
                ms=5 if own else 4,
                color=f"C{k}",
                label=f"{e} ({'in-domain' if own else 'cross-domain'})",
            )
        ax.set_xticks(range(len(CANONICAL)), CANONICAL, fontsize=7, rotation=90)
        ax.set(ylim=(0, 1.02), ylabel="F1", title=f"trained on {t}@{R}, scored at r = {R}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return save_figure(fig, paper.figures, "per_letter_f1")


def cross_domain_confusions(ctx: Context, rows: list[dict], paper: PaperFiles) -> list[Path]:
    """Row-normalised confusion matrices of every cross-domain evaluation (test splits, r = R,
    summed over seeds)."""
    pairs = list(
        dict.fromkeys(
            (r["train_dataset"], r["train_res"], r["eval_dataset"])
            for r in rows
            if kind(r) == "single" and ":" not in r["eval_dataset"] and r["eval_dataset"] != r["train_dataset"]
        )
    )
    if not pairs:
        return _empty(paper, "cross_domain_confusions", "no cross-domain evaluations (one dataset)")
    cols = min(3, len(pairs))
    nrows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(pairs) :]:
        ax.axis("off")
    for ax, (t, R, e) in zip(axes.flat, pairs):
        evs = cell_evals(ctx, t, R, e, R)
        labels = evs[0]["confusion"]["labels"]
        m = sum(np.array(ev["confusion"]["matrix"], float) for ev in evs if ev["confusion"]["labels"] == labels)
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, fontsize=5, rotation=90)
        ax.set_yticks(range(len(labels)), labels, fontsize=5)
        ax.set(title=f"{t}@{R} on {e}", xlabel="predicted", ylabel="true")
        ax.title.set_fontsize(8)
    fig.suptitle(
        "Cross-domain confusion matrices (test splits, r = R, summed over seeds; each row sums to 1)", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, paper.figures, "cross_domain_confusions")


def few_shot(ctx: Context, rows: list[dict], paper: PaperFiles) -> list[Path]:
    """Target accuracy against k labelled target images per class (log scale), one line per
    (source, R), on the target's test split at r = R with 95% intervals. k = 0 is the source's
    own model, "all" the pair's multi-source model (the source and the whole target training
    split); the dotted lines are the target-only models, the in-domain ceiling."""
    shots = [
        r for r in rows if kind(r) == "few-shot" and ":" not in r["eval_dataset"] and r["eval_res"] == r["train_res"]
    ]
    targets = list(dict.fromkeys(r["eval_dataset"] for r in shots))
    if not targets:
        return _empty(paper, "few_shot", "no few-shot models (fewer than two datasets)")
    prepared = ctx.prepared["datasets"]
    at_R = {
        (r["train_dataset"], r["train_res"], r["eval_dataset"]): r
        for r in rows
        if r["eval_res"] == r["train_res"] and ":" not in r["eval_dataset"]
    }
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 3.8), squeeze=False, sharey=True)
    for ax, target in zip(axes[0], targets):
        train = prepared[target]["splits"]["train"]
        x_all = train["images"] / len(train["per_class"])  # "all": the mean images per class
        lines = list(
            dict.fromkeys(
                (parse(r["train_dataset"]).sources[0], r["train_res"]) for r in shots if r["eval_dataset"] == target
            )
        )
        ks = sorted({parse(r["train_dataset"]).k for r in shots if r["eval_dataset"] == target})
        for i, (source, R) in enumerate(lines):
            pts = [(0.5, at_R.get((source, R, target)))]
            pts += [(k, at_R.get((f"{source}+{k}shot({target})", R, target))) for k in ks]
            union = [
                r
                for (t, RR, e), r in at_R.items()
                if RR == R and e == target and kind(r) == "multi-source" and set(parse(t).sources) == {source, target}
            ]
            pts += [(x_all, union[0] if union else None)]
            pts = [(x, r) for x, r in pts if r is not None]
            y = np.array([r["accuracy"] for _, r in pts])
            err = np.array(
                [[r["accuracy"] - r["accuracy_ci_low"], r["accuracy_ci_high"] - r["accuracy"]] for _, r in pts]
            ).T
            ax.errorbar(
                [x for x, _ in pts], y, yerr=err, marker="o", ms=3, capsize=2, color=f"C{i}", label=f"from {source}@{R}"
            )
        for j, R in enumerate(dict.fromkeys(R for _, R in lines)):
            ceiling = at_R.get((target, R, target))
            if ceiling is not None:
                ax.axhline(
                    ceiling["accuracy"], color=str(0.2 + 0.35 * j), lw=1, ls=":", label=f"{target}@{R} alone (ceiling)"
                )
        ax.set_xscale("log")
        ticks = [0.5, *ks, x_all]
        ax.set_xticks(ticks, ["0", *map(str, ks), f"all ({x_all:.0f})"])
        ax.minorticks_off()
        ax.set(title=f"target: {target}", xlabel="labelled target images per class, k (log scale)", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("accuracy on the target's test split (r = R)")
    fig.tight_layout()
    return save_figure(fig, paper.figures, "few_shot")


def effects(effect_list: list[dict], paper: PaperFiles) -> list[Path]:
    """The effects by question (`ordered_effects`): one panel per question, its cross-domain
    effects first, each with its simultaneous 95% interval (the verdict's); the in-domain cost
    of a lower test resolution, expected by construction, is left to the appendix's table. At
    most `PER_PANEL` a panel, the largest."""
    panels = [(q, xs[:PER_PANEL], len(xs)) for q, xs in ordered_effects(effect_list, expected_too=False).items() if xs]
    if not panels:
        return _empty(paper, "effects", "no effects (one dataset)")
    heights = [len(xs) for _, xs, _ in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 0.24 * sum(heights) + 0.9 * len(panels)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (q, xs, n) in zip(axes[:, 0], panels):
        y = np.arange(len(xs))[::-1]
        for dom, colour in (("cross-domain", "C3"), ("in-domain", "C0")):
            idx = [i for i, x in enumerate(xs) if x["domain"] == dom]
            if idx:
                d = np.array([xs[i]["difference"] for i in idx])
                err = np.array(
                    [
                        [xs[i]["difference"] - xs[i]["ci_family"][0], xs[i]["ci_family"][1] - xs[i]["difference"]]
                        for i in idx
                    ]
                ).T
                ax.errorbar(d, y[idx], xerr=err, fmt="o", ms=3, capsize=2, color=colour, label=dom)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(y, [_short(x) for x in xs], fontsize=7)
        ax.set_title(
            f"{QUESTION_TITLES[q]} ({len(xs)} of {n})" if n > len(xs) else QUESTION_TITLES[q], fontsize=9, loc="left"
        )
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("difference in accuracy (paired; simultaneous 95% interval over every effect)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, paper.figures, "effects")


def _short(x: dict) -> str:
    """An effect's label in the figure: the model that differs and where it is scored (the
    panel's title says against what; the appendix's table has the whole effect)."""
    (a, R, r), (b, Rb, rb) = x["pair"]
    if x["question"] == "training resolution":
        return f"{a}@{R} vs @{Rb} on {x['test']}"
    if x["question"] == "target data" and "+" in a and "shot(" not in a:  # a union: against which source
        return f"{a}@{R} vs {b} on {x['test']}"
    at = f", r = {r}" if r != R else ""
    return f"{a}@{R}{at} on {x['test']}"


def gradcam(ctx: Context, paper: PaperFiles) -> list[Path]:
    """The Grad-CAM overview drawn by the evaluate stage (study.diagnostics.gradcam), copied into the paper
    (the report reads files; it never runs a model)."""
    out = []
    for ext in ("png", "pdf"):
        src, dst = ctx.results.gradcam_overview(ext), paper.figure("gradcam", ext)
        write_bytes_atomic(dst, src.read_bytes())
        out.append(dst)
    return out


def _empty(paper: PaperFiles, name: str, why: str) -> list[Path]:
    """A figure with nothing to draw in this preset: a line saying why, in its place."""
    fig = plt.figure(figsize=(4, 1))
    fig.text(0.5, 0.5, why, ha="center")
    return save_figure(fig, paper.figures, name)
