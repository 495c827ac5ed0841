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
from study.core.plots import curves, save_figure  # before pyplot: it selects matplotlib's Agg backend
from study.stages.report.results import cell_evals, figure_rows, kind

import matplotlib.pyplot as plt  # noqa: E402  isort:skip


def training_curves(ctx: Context, models: list[tuple], seeds, paper_dir: Path) -> list[Path]:
    """Loss and accuracy per epoch of every model but the few-shot, adapted, both-views and
    augmented-landmark ones (all seeds overlaid), one row per model; each of those has its own curves.png."""
    models = [(n, R) for n, R in models if parse(n).kind not in ("few-shot", "adapted", "both views") and not parse(n).landmark_views]
    fig, axes = plt.subplots(len(models), 2, figsize=(9, 2.3 * len(models)), squeeze=False)
    for (name, R), row in zip(models, axes):
        for k, seed in enumerate(seeds):
            h = store.history(ctx, name, R, seed)
            curves(row, h, alpha=0.8 if k == 0 else 0.35, legend=k == 0)
        row[0].set_title(f"{name}@{R}: loss", fontsize=9)
        row[1].set_title(f"{name}@{R}: accuracy", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, paper_dir, "training_curves")


def accuracy_vs_resolution(ctx: Context, rows: list[dict], paper_dir: Path) -> list[Path]:
    """Accuracy against test resolution r, one panel per test set, one line per model; 95% CIs."""
    main = figure_rows(rows)
    evals = list(dict.fromkeys(r["eval_dataset"] for r in main))
    models = list(dict.fromkeys((r["train_dataset"], r["train_res"]) for r in main))
    fig, axes = plt.subplots(1, len(evals), figsize=(4.2 * len(evals), 3.6), squeeze=False, sharey=True)
    for ax, e in zip(axes[0], evals):
        chance = []
        for k, (t, R) in enumerate(models):
            pts = sorted((r["eval_res"], r) for r in main if r["eval_dataset"] == e and (r["train_dataset"], r["train_res"]) == (t, R))
            if not pts:
                continue
            x = [p for p, _ in pts]
            y = np.array([r["accuracy"] for _, r in pts])
            err = np.array([[r["accuracy"] - r["accuracy_ci_low"], r["accuracy_ci_high"] - r["accuracy"]] for _, r in pts]).T
            ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=f"{t}@{R}", color=f"C{k}",
                        linestyle="-" if e.split(":")[0] in parse(t).sources else "--")
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
    return save_figure(fig, paper_dir, "accuracy_vs_resolution")


def cross_domain_heatmap(rows: list[dict], paper_dir: Path) -> list[Path]:
    """Accuracy of each model (rows: one-dataset, multi-source and the remedies without target
    data) on each test set (columns), at each model's own R."""
    main = [r for r in rows if kind(r) in ("single", "multi-source", "augmented", "fine-tuned") and r["eval_res"] == r["train_res"]]
    Rs = sorted({r["train_res"] for r in main})
    trains = list(dict.fromkeys(r["train_dataset"] for r in main))
    evals = list(dict.fromkeys(r["eval_dataset"] for r in main))
    fig, axes = plt.subplots(1, len(Rs), figsize=(2.4 + 1.8 * len(evals) * len(Rs), 1.4 + 0.7 * len(trains)), squeeze=False)
    for ax, R in zip(axes[0], Rs):
        m = np.full((len(trains), len(evals)), np.nan)
        for r in main:
            if r["train_res"] == R:
                m[trains.index(r["train_dataset"]), evals.index(r["eval_dataset"])] = r["accuracy"]
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        for i in range(len(trains)):
            for j in range(len(evals)):
                if not np.isnan(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="white" if m[i, j] < 0.6 else "black", fontsize=8)
        ax.set_xticks(range(len(evals)), evals, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(trains)), trains, fontsize=8)
        ax.set(title=f"R = r = {R} px", xlabel="test set", ylabel="trained on" if R == Rs[0] else "")
    fig.colorbar(im, ax=axes[0].tolist(), label="accuracy", shrink=0.8)
    return save_figure(fig, paper_dir, "cross_domain_heatmap")


def per_letter_f1(ctx: Context, rows: list[dict], paper_dir: Path) -> list[Path]:
    """F1 per label, in-domain and on each other test set (test splits, r = R, mean over seeds)."""
    main = [r for r in figure_rows(rows) if ":" not in r["eval_dataset"]]
    models = list(dict.fromkeys((r["train_dataset"], r["train_res"]) for r in main))
    fig, axes = plt.subplots(len(models), 1, figsize=(11, 2.4 * len(models)), squeeze=False)
    for ax, (t, R) in zip(axes[:, 0], models):
        for k, e in enumerate(dict.fromkeys(r["eval_dataset"] for r in main)):
            evs = cell_evals(ctx, t, R, e, R)
            if not evs:
                continue
            f1 = [np.mean([ev["report"].get(c, {}).get("f1-score", np.nan) for ev in evs]) if c in evs[0]["report"] else np.nan
                  for c in CANONICAL]
            ax.plot(np.arange(len(CANONICAL)) + 0.12 * (k - 1), f1, ls="none", marker="o" if e == t else "x",
                    ms=5 if e == t else 4, color=f"C{k}", label=f"{e} ({'in-domain' if e == t else 'cross-domain'})")
        ax.set_xticks(range(len(CANONICAL)), CANONICAL, fontsize=7, rotation=90)
        ax.set(ylim=(0, 1.02), ylabel="F1", title=f"trained on {t}@{R}, scored at r = {R}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return save_figure(fig, paper_dir, "per_letter_f1")


def cross_domain_confusions(ctx: Context, rows: list[dict], paper_dir: Path) -> list[Path]:
    """Row-normalised confusion matrices of every cross-domain evaluation (test splits, r = R,
    summed over seeds)."""
    pairs = list(dict.fromkeys((r["train_dataset"], r["train_res"], r["eval_dataset"]) for r in rows
                               if kind(r) == "single" and ":" not in r["eval_dataset"]
                               and r["eval_dataset"] != r["train_dataset"]))
    if not pairs:
        return _empty(paper_dir, "cross_domain_confusions", "no cross-domain evaluations (one dataset)")
    cols = min(3, len(pairs))
    nrows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(pairs):]:
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
    fig.suptitle("Cross-domain confusion matrices (test splits, r = R, summed over seeds; each row sums to 1)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, paper_dir, "cross_domain_confusions")


def few_shot(ctx: Context, rows: list[dict], paper_dir: Path) -> list[Path]:
    """Target accuracy against k labelled target images per class (log scale), one line per
    (source, R), on the target's test split at r = R with 95% intervals. k = 0 is the source's
    own model, "all" the pair's multi-source model (the source and the whole target training
    split); the dotted lines are the target-only models, the in-domain ceiling."""
    shots = [r for r in rows if kind(r) == "few-shot" and ":" not in r["eval_dataset"] and r["eval_res"] == r["train_res"]]
    targets = list(dict.fromkeys(r["eval_dataset"] for r in shots))
    if not targets:
        return _empty(paper_dir, "few_shot", "no few-shot models (fewer than two datasets)")
    prepared = ctx.prepared["datasets"]
    at_R = {(r["train_dataset"], r["train_res"], r["eval_dataset"]): r for r in rows
            if r["eval_res"] == r["train_res"] and ":" not in r["eval_dataset"]}
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 3.8), squeeze=False, sharey=True)
    for ax, target in zip(axes[0], targets):
        train = prepared[target]["splits"]["train"]
        x_all = train["images"] / len(train["per_class"])  # "all": the mean images per class
        lines = list(dict.fromkeys((parse(r["train_dataset"]).sources[0], r["train_res"]) for r in shots if r["eval_dataset"] == target))
        ks = sorted({parse(r["train_dataset"]).k for r in shots if r["eval_dataset"] == target})
        for i, (source, R) in enumerate(lines):
            pts = [(0.5, at_R.get((source, R, target)))]
            pts += [(k, at_R.get((f"{source}+{k}shot({target})", R, target))) for k in ks]
            union = [r for (t, RR, e), r in at_R.items() if RR == R and e == target and kind(r) == "multi-source"
                     and set(parse(t).sources) == {source, target}]
            pts += [(x_all, union[0] if union else None)]
            pts = [(x, r) for x, r in pts if r is not None]
            y = np.array([r["accuracy"] for _, r in pts])
            err = np.array([[r["accuracy"] - r["accuracy_ci_low"], r["accuracy_ci_high"] - r["accuracy"]] for _, r in pts]).T
            ax.errorbar([x for x, _ in pts], y, yerr=err, marker="o", ms=3, capsize=2, color=f"C{i}", label=f"from {source}@{R}")
        for j, R in enumerate(dict.fromkeys(R for _, R in lines)):
            ceiling = at_R.get((target, R, target))
            if ceiling is not None:
                ax.axhline(ceiling["accuracy"], color=str(0.2 + 0.35 * j), lw=1, ls=":", label=f"{target}@{R} alone (ceiling)")
        ax.set_xscale("log")
        ticks = [0.5, *ks, x_all]
        ax.set_xticks(ticks, ["0", *map(str, ks), f"all ({x_all:.0f})"])
        ax.minorticks_off()
        ax.set(title=f"target: {target}", xlabel="labelled target images per class, k (log scale)", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("accuracy on the target's test split (r = R)")
    fig.tight_layout()
    return save_figure(fig, paper_dir, "few_shot")


def effects(effect_list: list[dict], paper_dir: Path) -> list[Path]:
    """The ranked effects (paired differences with 95% intervals), the largest 30, coloured by
    the question they answer."""
    top = effect_list[:30]
    if not top:
        return _empty(paper_dir, "effects", "no effects (one dataset)")
    questions = list(dict.fromkeys(x["question"] for x in effect_list))
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(top) + 1.2))
    y = np.arange(len(top))[::-1]
    for q_i, q in enumerate(questions):
        idx = [i for i, x in enumerate(top) if x["question"] == q]
        if not idx:
            continue
        d = np.array([top[i]["difference"] for i in idx])
        err = np.array([[top[i]["difference"] - top[i]["ci"][0], top[i]["ci"][1] - top[i]["difference"]] for i in idx]).T
        ax.errorbar(d, y[idx], xerr=err, fmt="o", ms=3, capsize=2, color=f"C{q_i}", label=q)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, [f"{x['effect']} on {x['test']}" for x in top], fontsize=6)
    ax.set(xlabel="difference in accuracy (paired, 95% interval)",
           title=f"The {len(top)} largest of {len(effect_list)} effects (intervals excluding 0 first)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, paper_dir, "effects")


def gradcam(ctx: Context, paper_dir: Path) -> list[Path]:
    """The Grad-CAM overview drawn by the evaluate stage (study.diagnostics.gradcam), copied into the paper
    (the report reads files; it never runs a model)."""
    out = []
    for ext in ("png", "pdf"):
        src, dst = ctx.out_dir / "gradcam" / "figures" / f"overview.{ext}", paper_dir / "figures" / f"gradcam.{ext}"
        write_bytes_atomic(dst, src.read_bytes())
        out.append(dst)
    return out


def _empty(paper_dir: Path, name: str, why: str) -> list[Path]:
    """A figure with nothing to draw in this preset: a line saying why, in its place."""
    fig = plt.figure(figsize=(4, 1))
    fig.text(0.5, 0.5, why, ha="center")
    return save_figure(fig, paper_dir, name)
