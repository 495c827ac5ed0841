"""Tables, figures and the paper, from result files only. Reads JSON and CSV; never imports jax.

`run_report(out_dir, paper_dir)` reads `results/<preset>/` (table.csv, datasets.json,
weights.json, features.json, the models' histories and the evaluations), checks that every
unit the table needs is there (otherwise it lists what is missing and writes nothing), and
writes: `table.md` and `paper_numbers.json` beside the results; `paper/tables/*.tex`;
`paper/figures/*.png` and `.pdf`, each by the function of the same name; and
`paper/paper.md` from `study/paper_template.md`, every number filled in from those files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from study.names import RANDOM, dataset_pairs, folder, parse, preset_models
from study.plots import curves, save_figure  # before pyplot: it selects matplotlib's Agg backend
from study.files import write_bytes_atomic
from study.stats import paired_difference

import matplotlib.pyplot as plt  # noqa: E402  isort:skip

# study.datasets.labels.CANONICAL, repeated so that the report imports no dataset code.
CANONICAL = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ("del", "nothing", "space")


class MissingResults(RuntimeError):
    """The results are incomplete; the message lists what is missing."""


# --- reading ---------------------------------------------------------------------------


def read_table(path: Path) -> list[dict]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("train_res", "eval_res", "n"):
            r[k] = int(r[k])
        for k in ("accuracy", "accuracy_sd", "accuracy_ci_low", "accuracy_ci_high", "macro_f1", "macro_f1_sd"):
            r[k] = float(r[k])
    return rows


# --- checking what is there ----------------------------------------------------------


def expected_units(out_dir: Path) -> tuple[dict, list[tuple], list[tuple]]:
    """The preset, the models (dataset, R) and table rows (train, R, eval, r) the results need."""
    from study.config import get_preset  # frozen dataclasses only: no jax

    prepared = json.loads((out_dir / "datasets.json").read_text())
    preset = get_preset(prepared["preset"])
    splits = {n: d["splits"] for n, d in prepared["datasets"].items()}
    names = [n for n in preset.datasets if n in splits]
    labels = {n: set(splits[n]["train"]["per_class"]) for n in names if {"train", "validation"} <= set(splits[n])}
    models = preset_models(preset, labels)
    rows = []
    for n, R in models:
        rs = preset.eval_resolutions_for(R)
        m = parse(n)
        if m.random:
            rows.append((n, R, n, R))
            continue
        for e in [m.target] if m.target else names:
            for split in preset.eval.splits:
                if split in splits[e]:
                    rows += [(n, R, e if split == "test" else f"{e}:{split}", r) for r in rs]
    return {"preset": preset, "prepared": prepared}, models, rows


def expected_separability(info: dict) -> list[tuple]:
    """(dataset a, dataset b, R, r) of every domain-separability row (study.separability)."""
    preset, prepared = info["preset"], info["prepared"]
    if preset.train.finetune:
        return []
    splits = {n: d["splits"] for n, d in prepared["datasets"].items()}
    labels = {n: set(splits[n]["train"]["per_class"]) for n in preset.datasets
              if n in splits and {"train", "test"} <= set(splits[n])}
    return [(a, b, R, r) for a, b, _ in dataset_pairs(labels)
            for R in preset.train_resolutions for r in preset.eval_resolutions_for(R)]


def read_separability(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("R", "r", "n_train", "n_test"):
            r[k] = int(r[k])
        for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high"):
            r[k] = float(r[k])
    return rows


def check_complete(out_dir: Path) -> tuple[dict, list[tuple], list[dict]]:
    """Everything the report needs, or MissingResults naming each missing unit."""
    missing = []
    if not (out_dir / "datasets.json").is_file():
        raise MissingResults(f"{out_dir}/datasets.json is missing: run prepare")
    info, models, want = expected_units(out_dir)
    preset = info["preset"]
    for n, R in models:
        for seed in preset.seeds:
            d = out_dir / "models" / folder(n, R) / f"seed{seed}"
            if not (d / "unit.json").is_file() or not (d / "history.json").is_file():
                missing.append(f"model {n}@{R} seed {seed}")
    rows = read_table(out_dir / "table.csv") if (out_dir / "table.csv").is_file() else []
    have = {(r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"]) for r in rows}
    missing += [f"table row {t}@{R} on {e} at r={r}" for t, R, e, r in want if (t, R, e, r) not in have]
    info["separability"] = read_separability(out_dir / "separability.csv")
    have = {(r["dataset_a"], r["dataset_b"], r["R"], r["r"]) for r in info["separability"]}
    missing += [f"separability of {a} and {b} at R={R}, r={r}" for a, b, R, r in expected_separability(info)
                if (a, b, R, r) not in have]
    if not (out_dir / "gradcam" / "figures" / "overview.png").is_file():
        missing.append(f"the Grad-CAM overview ({out_dir / 'gradcam' / 'figures' / 'overview.png'}, made by evaluate)")
    if missing:
        head = "\n  ".join(missing[:30])
        more = f"\n  ... and {len(missing) - 30} more" if len(missing) > 30 else ""
        raise MissingResults(f"results in {out_dir} are incomplete; nothing was written. Missing:\n  {head}{more}\n"
                             f"Run `python -m study.run all --preset {preset.name}` to complete them.")
    return info, models, rows


def _evals(out_dir: Path, train: str, R: int, eval_ds: str, r: int) -> list[dict]:
    ds, _, split = eval_ds.partition(":")
    return [json.loads(p.read_text()) for p in sorted((out_dir / "eval" / folder(train, R)).glob(f"seed*/{ds}.{split or 'test'}.r{r}.json"))]


def kind(row: dict) -> str:
    """single, multi-source, few-shot, ablation, augmented or fine-tuned: what the row's model was trained on."""
    return parse(row["train_dataset"]).kind


def _figure_rows(rows: list[dict]) -> list[dict]:
    """The models the comparison figures draw: one-dataset and multi-source (few-shot models
    have their own figure, the ablation its own table)."""
    return [r for r in rows if kind(r) in ("single", "multi-source")]


# --- tables ----------------------------------------------------------------------------


def _cell(row: dict | None) -> str:
    if row is None:
        return "–"
    return f"{row['accuracy']:.3f} [{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}] / {row['macro_f1']:.3f}"


def comparison(rows: list[dict]) -> tuple[list[str], list[str], dict]:
    """Row labels (train@R), column labels (eval@r) and cells of the cross-domain table."""
    main = [r for r in rows if kind(r) != "ablation"]
    models = list(dict.fromkeys(f"{r['train_dataset']}@{r['train_res']}" for r in main))
    evals = list(dict.fromkeys(r["eval_dataset"] for r in main))
    res = sorted({r["eval_res"] for r in main}, reverse=True)
    cols = [f"{e}@{r}" for e in evals for r in res]
    cells = {(f"{r['train_dataset']}@{r['train_res']}", f"{r['eval_dataset']}@{r['eval_res']}"): r for r in main}
    return models, cols, cells


def table_markdown(rows: list[dict], confidence: float, separability: list[dict] | None = None) -> str:
    models, cols, cells = comparison(rows)
    lines = [
        f"Accuracy [{confidence * 100:g}% bootstrap interval] / macro-F1, mean over seeds. Rows: models (train dataset @ "
        "training resolution R); columns: test set @ test resolution r (images area-downsampled to "
        "r and resized back to R; – where r > R or not scored: a few-shot model is scored on its target only). "
        "Across datasets only shared labels count.",
        "",
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    lines += [f"| {m} | " + " | ".join(_cell(cells.get((m, c))) for c in cols) + " |" for m in models]
    abl = ablation_rows(rows)
    if abl:
        lines += ["", "Leakage ablation: the same images and seeds, split by frame blocks vs at random.", "",
                  "| dataset @ R | frame-block split | random split | inflation |", "|---|---|---|---|"]
        lines += [f"| {a['dataset']}@{a['R']} | {a['block']:.3f} | {a['random']:.3f} | {a['inflation']:+.3f} |" for a in abl]
    if separability:
        rs = sorted({x["r"] for x in separability}, reverse=True)
        lines += ["", "Domain separability: accuracy [95% interval] of a linear classifier, trained on the training splits "
                  "at R, telling the two datasets' test images apart at r (balanced per label; chance 0.5).", "",
                  "| datasets @ R | " + " | ".join(f"r = {r}" for r in rs) + " |", "|---|" + "---|" * len(rs)]
        for (a, b) in dict.fromkeys((x["dataset_a"], x["dataset_b"]) for x in separability):
            for R in sorted({x["R"] for x in separability}):
                cell = {x["r"]: x for x in separability if (x["dataset_a"], x["dataset_b"], x["R"]) == (a, b, R)}
                lines.append(f"| {a} vs {b} @ {R} | " + " | ".join(
                    f"{cell[r]['accuracy']:.3f} [{cell[r]['accuracy_ci_low']:.3f}, {cell[r]['accuracy_ci_high']:.3f}]"
                    if r in cell else "–" for r in rs) + " |")
    return "\n".join(lines) + "\n"


def ablation_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if r["train_dataset"].endswith(RANDOM):
            base = r["train_dataset"].removesuffix(RANDOM)
            block = next(x for x in rows if x["train_dataset"] == base and x["eval_dataset"] == base
                         and x["train_res"] == r["train_res"] and x["eval_res"] == r["train_res"])
            out.append({"dataset": base, "R": r["train_res"], "block": block["accuracy"], "random": r["accuracy"],
                        "inflation": round(r["accuracy"] - block["accuracy"], 4)})
    return out


def _tex(s: str) -> str:
    return s.replace("_", r"\_").replace("%", r"\%").replace("–", "--")


def table_latex(rows: list[dict]) -> str:
    models, cols, cells = comparison(rows)
    head = " & ".join(_tex(c) for c in cols)
    body = []
    for m in models:
        vals = []
        for c in cols:
            r = cells.get((m, c))
            vals.append("--" if r is None else f"{r['accuracy']:.3f} [{r['accuracy_ci_low']:.3f}, {r['accuracy_ci_high']:.3f}]")
        body.append(f"{_tex(m)} & " + " & ".join(vals) + r" \\")
    return "\n".join([
        r"% Generated by `python -m study.run report` from results/<preset>/table.csv; do not edit.",
        r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule", f"model & {head} " + r"\\", r"\midrule",
        *body, r"\bottomrule", r"\end{tabular}", ""])


# --- figures: one function each, named as the file it writes --------------------------------


def training_curves(out_dir: Path, models: list[tuple], seeds, paper_dir: Path) -> list[Path]:
    """Loss and accuracy per epoch of every model but the few-shot ones (all seeds overlaid),
    one row per model; each few-shot model's curves are its own curves.png."""
    models = [(n, R) for n, R in models if parse(n).kind != "few-shot"]
    fig, axes = plt.subplots(len(models), 2, figsize=(9, 2.3 * len(models)), squeeze=False)
    for (name, R), row in zip(models, axes):
        for k, seed in enumerate(seeds):
            h = json.loads((out_dir / "models" / folder(name, R) / f"seed{seed}" / "history.json").read_text())["history"]
            curves(row, h, alpha=0.8 if k == 0 else 0.35, legend=k == 0)
        row[0].set_title(f"{name}@{R}: loss", fontsize=9)
        row[1].set_title(f"{name}@{R}: accuracy", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, paper_dir, "training_curves")


def accuracy_vs_resolution(out_dir: Path, rows: list[dict], paper_dir: Path) -> list[Path]:
    """Accuracy against test resolution r, one panel per test set, one line per model; 95% CIs."""
    main = _figure_rows(rows)
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
            chance.append(1 / len(_evals(out_dir, t, R, e, pts[0][0])[0]["labels"]))
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


def per_letter_f1(out_dir: Path, rows: list[dict], paper_dir: Path) -> list[Path]:
    """F1 per label, in-domain and on each other test set (test splits, r = R, mean over seeds)."""
    main = [r for r in _figure_rows(rows) if ":" not in r["eval_dataset"]]
    models = list(dict.fromkeys((r["train_dataset"], r["train_res"]) for r in main))
    fig, axes = plt.subplots(len(models), 1, figsize=(11, 2.4 * len(models)), squeeze=False)
    for ax, (t, R) in zip(axes[:, 0], models):
        for k, e in enumerate(dict.fromkeys(r["eval_dataset"] for r in main)):
            evs = _evals(out_dir, t, R, e, R)
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


def cross_domain_confusions(out_dir: Path, rows: list[dict], paper_dir: Path) -> list[Path]:
    """Row-normalised confusion matrices of every cross-domain evaluation (test splits, r = R,
    summed over seeds)."""
    pairs = list(dict.fromkeys((r["train_dataset"], r["train_res"], r["eval_dataset"]) for r in rows
                               if kind(r) == "single" and ":" not in r["eval_dataset"]
                               and r["eval_dataset"] != r["train_dataset"]))
    if not pairs:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "no cross-domain evaluations (one dataset)", ha="center")
        return save_figure(fig, paper_dir, "cross_domain_confusions")
    cols = min(3, len(pairs))
    nrows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    for ax, (t, R, e) in zip(axes.flat, pairs):
        evs = _evals(out_dir, t, R, e, R)
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


def few_shot(out_dir: Path, rows: list[dict], paper_dir: Path) -> list[Path]:
    """Target accuracy against k labelled target images per class (log scale), one line per
    (source, R), on the target's test split at r = R with 95% intervals. k = 0 is the source's
    own model, "all" the pair's multi-source model (the source and the whole target training
    split); the dotted lines are the target-only models, the in-domain ceiling."""
    shots = [r for r in rows if kind(r) == "few-shot" and ":" not in r["eval_dataset"] and r["eval_res"] == r["train_res"]]
    targets = list(dict.fromkeys(r["eval_dataset"] for r in shots))
    if not targets:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "no few-shot models (fewer than two datasets)", ha="center")
        return save_figure(fig, paper_dir, "few_shot")
    prepared = json.loads((out_dir / "datasets.json").read_text())["datasets"]
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
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "no effects (one dataset)", ha="center")
        return save_figure(fig, paper_dir, "effects")
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


def gradcam(out_dir: Path, paper_dir: Path) -> list[Path]:
    """The Grad-CAM overview drawn by the evaluate stage (study.gradcam), copied into the paper
    (the report reads files; it never runs a model)."""
    out = []
    for ext in ("png", "pdf"):
        src, dst = out_dir / "gradcam" / "figures" / f"overview.{ext}", paper_dir / "figures" / f"gradcam.{ext}"
        write_bytes_atomic(dst, src.read_bytes())
        out.append(dst)
    return out


# --- the paper ---------------------------------------------------------------------------


def _f(x: float) -> str:
    return f"{x:.3f}"


def paper_numbers(info: dict, rows: list[dict], out_dir: Path) -> dict:
    """The values the paper states beyond the table, derived from the result files."""
    prepared, preset = info["prepared"], info["preset"]
    main = [r for r in rows if kind(r) == "single"]
    in_domain = [r for r in main if r["eval_dataset"] == r["train_dataset"] and r["eval_res"] == r["train_res"]]
    cross = [r for r in main if r["eval_dataset"].split(":")[0] != r["train_dataset"] and r["eval_res"] == r["train_res"]
             and ":" not in r["eval_dataset"]]
    degr = []
    for r in in_domain:
        low = min((x for x in main if x["train_dataset"] == r["train_dataset"] and x["train_res"] == r["train_res"]
                   and x["eval_dataset"] == r["eval_dataset"]), key=lambda x: x["eval_res"])
        degr.append({"model": f"{r['train_dataset']}@{r['train_res']}", "r_low": low["eval_res"],
                     "at_R": r["accuracy"], "at_r_low": low["accuracy"]})
    weights = json.loads((out_dir / "weights.json").read_text())
    return {
        "preset": preset.name,
        "config": preset.to_dict(),
        "in_domain": [{"model": f"{r['train_dataset']}@{r['train_res']}", "accuracy": r["accuracy"],
                       "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]], "macro_f1": r["macro_f1"]} for r in in_domain],
        "cross_domain": [{"model": f"{r['train_dataset']}@{r['train_res']}", "test": r["eval_dataset"], "accuracy": r["accuracy"],
                          "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
                          "chance": 1 / len(_evals(out_dir, r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"])[0]["labels"])}
                         for r in cross],
        "degradation": degr,
        "ablation": ablation_rows(rows),
        "multi_source": multi_source_rows(rows, out_dir, preset),
        "separability": [{"datasets": [x["dataset_a"], x["dataset_b"]], "R": x["R"], "accuracy": x["accuracy"],
                          "ci": [x["accuracy_ci_low"], x["accuracy_ci_high"]]}
                         for x in info["separability"] if x["r"] == x["R"]],
        "few_shot": few_shot_rows(rows, out_dir, preset),
        "effects": effect_rows(rows, out_dir, preset),
        "datasets": {n: {s: v["images"] for s, v in d["splits"].items()} | {"left_out": d["left_out_by_guard_band"]["images"]}
                     for n, d in prepared["datasets"].items()},
        "not_found": sorted(prepared.get("not_found", {})),
        "weights": {"source": weights["source"], "sha256": weights["source_sha256"], "parameters": weights["parameters"]},
    }


def _at_R(rows: list[dict]) -> dict[tuple, dict]:
    """Test-split rows at r = R by (model, R, eval dataset)."""
    return {(r["train_dataset"], r["train_res"], r["eval_dataset"]): r for r in rows
            if r["eval_res"] == r["train_res"] and ":" not in r["eval_dataset"]}


def _correct(out_dir: Path, model: tuple, eval_ds: str) -> tuple[np.ndarray, list]:
    """Seeds x images: 1 where the model (name, R, r) was right on `eval_ds`; and the images' labels."""
    name, R, r = model
    evs = _evals(out_dir, name, R, eval_ds, r)
    return np.stack([np.asarray(e["y_true"]) == np.asarray(e["y_pred"]) for e in evs]).astype(float), evs[0]["y_true"]


def paired(out_dir: Path, preset, a: tuple, b: tuple, eval_ds: str, minus: tuple[tuple, tuple] | None = None) -> dict | None:
    """Accuracy of a minus b, each (model, R, r) scored on the same test images of `eval_ds`
    and averaged over its seeds, with the interval over the table's bootstrap resamples
    (DESIGN.md section 6); None where the two were scored on different images (other shared
    labels). With `minus` = (c, d): the difference (a - c) - (b - d), a change of an effect."""
    (ca, ya), (cb, yb) = _correct(out_dir, a, eval_ds), _correct(out_dir, b, eval_ds)
    if ya != yb:
        return None
    if minus:
        (cc, yc), (cd, yd) = _correct(out_dir, minus[0], eval_ds), _correct(out_dir, minus[1], eval_ds)
        if not ya == yc == yd:
            return None
        ca, cb = ca.mean(0, keepdims=True) - cc.mean(0, keepdims=True), cb.mean(0, keepdims=True) - cd.mean(0, keepdims=True)
    gain, ci = paired_difference(ca, cb, preset.eval.bootstrap, preset.eval.confidence)
    return {"gain": gain, "ci": ci}


def paired_gain(out_dir: Path, preset, model: str, baseline: str, R: int, eval_ds: str) -> dict | None:
    """`model` minus `baseline`, both at R and scored at r = R (see `paired`)."""
    return paired(out_dir, preset, (model, R, R), (baseline, R, R), eval_ds)


def multi_source_rows(rows: list[dict], out_dir: Path, preset) -> list[dict]:
    """Each multi-source model on each of its sources' test splits (r = R), beside the model
    trained on that source alone, with the paired difference."""
    at = _at_R(rows)
    out = []
    for (t, R, e), r in at.items():
        if kind(r) == "multi-source" and e in parse(t).sources and (e, R, e) in at:
            out.append({"model": f"{t}@{R}", "test": e, "accuracy": r["accuracy"], "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
                        "alone": at[(e, R, e)]["accuracy"], "difference": paired_gain(out_dir, preset, t, e, R, e)})
    return out


def few_shot_rows(rows: list[dict], out_dir: Path, preset) -> list[dict]:
    """Per (source, target, R): target accuracy (test split, r = R) with k = 0, each k, and
    all target images, and the target-only model's; the gain of the largest k over k = 0."""
    at = _at_R(rows)
    out = {}
    for (t, R, e), r in at.items():
        m = parse(t)
        if m.kind != "few-shot":
            continue
        key = (m.sources[0], e, R)
        if key not in out:
            union = [x for (u, RR, ee), x in at.items() if RR == R and ee == e and kind(x) == "multi-source"
                     and set(parse(u).sources) == {m.sources[0], e}]
            out[key] = {"source": m.sources[0], "target": e, "R": R, "k0": at.get((m.sources[0], R, e), {}).get("accuracy"),
                        "shots": {}, "all": union[0]["accuracy"] if union else None,
                        "target_alone": at.get((e, R, e), {}).get("accuracy")}
        out[key]["shots"][str(m.k)] = r["accuracy"]
    for v in out.values():
        v["shots"] = dict(sorted(v["shots"].items(), key=lambda kv: int(kv[0])))
        k_max = list(v["shots"])[-1]
        v["k_max"] = int(k_max)
        v["gain_k_max"] = (paired_gain(out_dir, preset, f"{v['source']}+{k_max}shot({v['target']})", v["source"], v["R"], v["target"])
                           if v["k0"] is not None else None)
    return list(out.values())


# --- effects: every comparison the discussion ranks ---------------------------------------


def _verdict(ci: list[float]) -> str:
    return "higher" if ci[0] > 0 else "lower" if ci[1] < 0 else "no clear difference"


def effect_rows(rows: list[dict], out_dir: Path, preset) -> list[dict]:
    """Every effect the discussion weighs, as paired differences on the same test images
    (test splits), ranked: those whose interval excludes 0 first, then by size.

    - remedy: an augmented or fine-tuned model against its frozen baseline (same dataset, R,
      seeds), at r = R, on every test set; `target_images` False.
    - target data: a few-shot model (the smallest and the largest k) against its source's
      model, on the target; a multi-source model against each source's model, on every test
      set; `target_images` True where the test set's images were among its training data.
    - training resolution: a dataset's model at each R against the next lower R (r = R).
    - test resolution: a single-dataset, augmented or fine-tuned model at r < R against r = R.
    - remedy x test resolution: how a remedy changes the test-resolution effect at the lowest r,
      (remedy at r - remedy at R) - (baseline at r - baseline at R).
    """
    at = {(r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"]): r for r in rows if ":" not in r["eval_dataset"]}
    models = list(dict.fromkeys((t, R) for t, R, _, _ in at))
    tests = list(dict.fromkeys(e for _, _, e, _ in at))
    out = []

    def add(question, effect, a, b, e, minus=None, target_images=False):
        if (a[0], a[1], e, a[2]) not in at or (b[0], b[1], e, b[2]) not in at:
            return
        if minus and any((m[0], m[1], e, m[2]) not in at for m in minus):
            return
        d = paired(out_dir, preset, a, b, e, minus)
        if d is None:
            return
        base = parse(b[0])
        out.append({"question": question, "effect": effect, "test": e,
                    "domain": "in-domain" if e in base.sources else "cross-domain", "target_images": target_images,
                    "a": at[a[0], a[1], e, a[2]]["accuracy"], "b": at[b[0], b[1], e, b[2]]["accuracy"],
                    "difference": d["gain"], "ci": d["ci"], "verdict": _verdict(d["ci"])})

    for t, R in models:
        m = parse(t)
        for e in tests:
            if m.remedy:
                b = m.sources[0]
                what = "augmented views" if m.views else "block 5 fine-tuned"
                add("remedy", f"{t}@{R} vs {b}@{R} ({what})", (t, R, R), (b, R, R), e)
                rs = preset.eval_resolutions_for(R)
                if len(rs) > 1:
                    r = rs[-1]
                    add("remedy x test resolution", f"{t}@{R} vs {b}@{R}: effect of r = {r} instead of {R}",
                        (t, R, r), (b, R, r), e, minus=((t, R, R), (b, R, R)))
            elif m.kind == "few-shot":
                ks = sorted({parse(x).k for x, RR in models if RR == R and parse(x).kind == "few-shot"
                             and parse(x).sources == m.sources and parse(x).target == m.target})
                if m.k in (ks[0], ks[-1]) and e == m.target:
                    add("target data", f"{t}@{R} vs {m.sources[0]}@{R} ({m.k} target image{'s' if m.k > 1 else ''} per letter)",
                        (t, R, R), (m.sources[0], R, R), e, target_images=True)
            elif m.kind == "multi-source":
                for s in m.sources:
                    added = f"all of {e}'s training images added" if e in m.sources and e != s else "union of training splits"
                    add("target data", f"{t}@{R} vs {s}@{R} ({added})", (t, R, R), (s, R, R), e,
                        target_images=e in m.sources and e != s)
            if m.kind in ("single", "augmented", "fine-tuned"):
                for r in preset.eval_resolutions_for(R)[1:]:
                    add("test resolution", f"{t}@{R} tested at r = {r} vs r = {R}", (t, R, r), (t, R, R), e)
            if m.kind == "single":
                lower = [RR for tt, RR in models if tt == t and RR < R]
                if lower:
                    add("training resolution", f"{t}@{R} vs {t}@{max(lower)}", (t, R, R), (t, max(lower), max(lower)), e)
    out.sort(key=lambda x: (x["verdict"] == "no clear difference", -abs(x["difference"])))
    return out


def _effect(x: dict, accs: bool = True) -> str:
    """"asl_alphabet/aug4@64 vs asl_alphabet@64 on asl_photos (cross-domain): +0.031 [+0.012, +0.050], higher"."""
    lo, hi = x["ci"]
    tail = f" (from {_f(x['b'])} to {_f(x['a'])})" if accs and x["question"] != "remedy x test resolution" else ""
    return f"{x['effect']} on {x['test']} ({x['domain']}): {x['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]{tail}, {x['verdict']}"


def effects_markdown(effects: list[dict]) -> str:
    lines = ["| rank | question | effect | test set | difference [95% interval] | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {i} | {x['question']} | {x['effect']} | {x['test']} ({x['domain']}) | {x['difference']:+.3f} "
              f"[{x['ci'][0]:+.3f}, {x['ci'][1]:+.3f}] | {x['verdict']} |" for i, x in enumerate(effects, 1)]
    return "\n".join(lines)


def _difference(d: dict | None) -> str:
    """", difference +0.012 [-0.004, 0.028], no clear difference": the words follow the interval."""
    if d is None:
        return ""
    lo, hi = d["ci"]
    verdict = "higher" if lo > 0 else "lower" if hi < 0 else "no clear difference (the interval includes 0)"
    return f", paired difference {d['gain']:+.3f} [{lo:+.3f}, {hi:+.3f}]: {verdict}"


def _remedies(nums: dict) -> str:
    """The remedies' paragraph: every number read from `nums` (paper_numbers.json)."""
    own = [x for x in nums["effects"] if x["question"] == "remedy"]
    if not nums["multi_source"] and not nums["few_shot"] and not own:
        return "Not run in this preset (it needs two datasets that share labels)."
    parts = []
    if own:
        parts.append("Augmented views and a fine-tuned block 5, each against the frozen model of the same dataset and R, "
                     "on every test split at r = R: " + "; ".join(_effect(x) for x in sorted(own, key=lambda x: x["effect"])) + ".")
    if nums["multi_source"]:
        parts.append("A head trained on the union of the datasets' training splits, against the head trained on one "
                     "dataset, each on that dataset's test split at r = R (a union is scored on the labels all its "
                     "sources have): " + "; ".join(
                         f"{x['model']} on {x['test']} {_f(x['accuracy'])} [{_f(x['ci'][0])}, {_f(x['ci'][1])}] "
                         f"(alone {_f(x['alone'])}{_difference(x['difference'])})" for x in nums["multi_source"]) + ".")
    if nums["few_shot"]:
        lines = []
        for x in nums["few_shot"]:
            steps = [f"{_f(x['k0'])} with none"] if x["k0"] is not None else []
            steps += [f"{_f(a)} with {k}" for k, a in x["shots"].items()]
            steps += [f"{_f(x['all'])} with all"] if x["all"] is not None else []
            ceiling = f" (a model trained on {x['target']} alone: {_f(x['target_alone'])})" if x["target_alone"] is not None else ""
            gain = (f"; {x['k_max']} per letter against none{_difference(x['gain_k_max'])}" if x["gain_k_max"] else "")
            lines.append(f"from {x['source']}@{x['R']} to {x['target']}: " + ", ".join(steps) + ceiling + gain)
        parts.append("Adding k labelled target images per letter to the source's training split, the target's test "
                     "accuracy (r = R) goes " + "; ".join(lines) + ".")
    return " ".join(parts)


def _discussion(nums: dict, kaggle: list[dict]) -> str:
    """The discussion: three questions, each answered from `nums` (paper_numbers.json), and
    the largest effects, whichever they are. Every word that depends on a number (fails or
    not, higher, lower, no clear difference, which effect is largest) is chosen here from it."""
    ind = {x["model"]: x for x in nums["in_domain"]}
    cro = nums["cross_domain"]
    fx = nums["effects"]
    parts = []
    # 1. Does the transfer fail, and how badly?
    if cro:
        ratios = [x["accuracy"] / ind[x["model"]]["accuracy"] for x in cro if ind.get(x["model"], {}).get("accuracy")]
        failed = all(x["ci"][1] < ind[x["model"]]["ci"][0] for x in cro if x["model"] in ind)
        verdict = ("Yes, in every direction measured: every cross-domain interval lies below the same model's in-domain "
                   "interval." if failed else "Not everywhere: some cross-domain intervals overlap the in-domain ones.")
        chance = "; ".join(f"{x['model']} on {x['test']} {_f(x['accuracy'])} [{_f(x['ci'][0])}, {_f(x['ci'][1])}] "
                           f"(chance {_f(x['chance'])})" for x in cro)
        text = (f"**Does the transfer fail, and how badly?** {verdict} In-domain at r = R: "
                + "; ".join(f"{k} {_f(v['accuracy'])}" for k, v in ind.items())
                + f". Across datasets at r = R: {chance}, that is {min(ratios):.0%} to {max(ratios):.0%} of the same "
                  "model's in-domain accuracy.")
        sep = nums["separability"]
        if sep:
            listed = "; ".join(f"{x['datasets'][0]} vs {x['datasets'][1]} {_f(x['accuracy'])} [{_f(x['ci'][0])}, "
                               f"{_f(x['ci'][1])}] at R = {x['R']}" for x in sep)
            lowest = min(x["ci"][0] for x in sep)
            best_cross = max(x["accuracy"] for x in cro)
            text += f" Why: a linear classifier on the frozen features tells the datasets' test images apart (balanced per letter, chance 0.5): {listed}."
            if lowest > best_cross:
                text += (f" Even the lowest bound of these ({_f(lowest)}) lies above the best cross-domain letter accuracy "
                         f"({_f(best_cross)}): the features say which dataset an image comes from far more reliably than "
                         "a letter classifier carries its letters from one dataset to the other.")
        hidden = ([f"on the {kaggle[0]['n']} official Kaggle test images, photographed with the training images, "
                   + " and ".join(f"{r['train_dataset']}@{r['train_res']} scores {_f(r['accuracy'])}" for r in kaggle)] if kaggle else [])
        hidden += [f"a random split of {a['dataset']}'s frames moves its in-domain accuracy at R = {a['R']} by "
                   f"{a['inflation']:+.3f}" for a in nums["ablation"]]
        if hidden:
            text += (" The single signer of asl_alphabet hides part of the failure even in-domain: " + "; ".join(hidden)
                     + ". Images from the recording a model was trained on say little about a new signer or room.")
        parts.append(text)
    # 2. What recovers it?
    no_target = [x for x in fx if x["question"] == "remedy" and x["domain"] == "cross-domain"]
    few = [x for x in fx if x["question"] == "target data" and "shot(" in x["effect"]]
    with_target = [x for x in fx if x["question"] == "target data" and x["target_images"]]
    costs = [x for x in fx if x["question"] == "target data" and x["domain"] == "in-domain"]
    text = "**What recovers it?**"
    if no_target:
        best = max(no_target, key=lambda x: x["difference"])
        helped = [x for x in no_target if x["verdict"] == "higher"]
        text += (" Without target images, against the frozen baseline: "
                 + "; ".join(_effect(x) for x in sorted(no_target, key=lambda x: -x["difference"]))
                 + f". {len(helped)} of these {len(no_target)} cross-domain differences are clearly above zero; the largest "
                 f"is {best['effect']} on {best['test']} ({best['difference']:+.3f}).")
        in_dom = [x for x in fx if x["question"] == "remedy" and x["domain"] == "in-domain"]
        if in_dom:
            text += " In-domain the same remedies give " + "; ".join(_effect(x, False) for x in in_dom) + "."
    if with_target:
        best = max(with_target, key=lambda x: x["difference"])
        top = max(no_target, key=lambda x: x["difference"])["difference"] if no_target else None
        text += (" With target images: " + "; ".join(_effect(x) for x in few) + f". The largest gain is {best['effect']} "
                 f"on {best['test']} ({best['difference']:+.3f})")
        text += (": labelled photos of the new domain, even a few per letter, recover far more than any change to "
                 "training on the source alone." if top is not None and min(x["difference"] for x in few or [best]) > top
                 else ".")
    if costs:
        text += " Training on the union costs the sources' own test sets: " + "; ".join(_effect(x, False) for x in costs) + "."
    if not (no_target or with_target):
        text += " Not run in this preset."
    parts.append(text)
    # 3. What does downsizing the pixels do?
    text = "**What does downsizing the pixels do?**"
    train_res = [x for x in fx if x["question"] == "training resolution"]
    if train_res:
        text += " Training at the higher resolution R: " + "; ".join(_effect(x, False) for x in train_res) + "."
    test_res = [x for x in fx if x["question"] == "test resolution"]
    if test_res:
        ind_drop = [x for x in test_res if x["domain"] == "in-domain"]
        better = [x for x in test_res if x["domain"] == "cross-domain" and x["verdict"] == "higher"]
        if ind_drop:
            worst = min(ind_drop, key=lambda x: x["difference"])
            text += (f" Lowering the test resolution costs in-domain accuracy up to {-worst['difference']:.3f} "
                     f"({worst['effect']} on {worst['test']}).")
        if better:
            text += (f" Across datasets, a lower test resolution transfers *better* in {len(better)} of "
                     f"{sum(x['domain'] == 'cross-domain' for x in test_res)} cases: "
                     + "; ".join(_effect(x) for x in better[:6]) + (" (the rest in the ranked table)" if len(better) > 6 else "")
                     + ". Removing detail removes part of what ties a model to its own dataset's images.")
        else:
            text += " Across datasets, no lower test resolution transfers clearly better than r = R."
    inter = [x for x in fx if x["question"] == "remedy x test resolution"]
    if inter:
        changed = [x for x in inter if x["verdict"] != "no clear difference"]
        text += (" The remedies " + (f"change the effect of the lowest test resolution in {len(changed)} of {len(inter)} cases"
                                     if changed else "do not clearly change the effect of the lowest test resolution")
                 + " (positive: the remedy loses less, or gains more, at low r than its baseline): "
                 + "; ".join(_effect(x, False) for x in inter) + ".")
    parts.append(text)
    clear = [x for x in fx if x["verdict"] != "no clear difference"]
    if clear:
        parts.append(f"**The largest effects**, by size among the {len(clear)} of {len(fx)} whose interval excludes zero "
                     "(all are in the ranked table below and in `paper_numbers.json`): "
                     + "; ".join(f"({i}) {_effect(x)}" for i, x in enumerate(clear[:5], 1)) + ".")
    return "\n\n".join(parts)


def _paper(info: dict, rows: list[dict], nums: dict, template: str) -> str:
    preset = info["preset"]
    prepared = info["prepared"]
    data = ["| dataset | archive files | train | validation | test | kaggle_test | left out by guard band |", "|---|---|---|---|---|---|---|"]
    for n, d in prepared["datasets"].items():
        sp = d["splits"]
        g = lambda s: str(sp[s]["images"]) if s in sp else "–"
        data.append(f"| {n} | {d['archive']['files']} | {g('train')} | {g('validation')} | {g('test')} | {g('kaggle_test')} | "
                    f"{d['left_out_by_guard_band']['images']} |")
    dists = [f"{n}: {d['min_frame_distance']['test_to_train_or_validation']}" for n, d in prepared["datasets"].items()
             if d.get("min_frame_distance")]
    if preset.name == "paper":
        scope = "This is the study of record, on the full Kaggle datasets."
    else:
        scope = ("**Scope.** These are the results of the `" + preset.name + "` preset on the data found on the machine "
                 "that ran it (counts below), not the full datasets; the `paper` preset on the full Kaggle archives is "
                 "the study of record." + (f" Not found, so not in this study: {', '.join(nums['not_found'])}." if nums["not_found"] else ""))
    kaggle = [r for r in rows if r["eval_dataset"].endswith(":kaggle_test") and r["eval_res"] == r["train_res"]
              and r["eval_dataset"].split(":")[0] == r["train_dataset"]]
    discussion = _discussion(nums, kaggle)
    abl = nums["ablation"]
    if abl:
        ablation = ("The same model, trained and scored on a random split of the same images (same split sizes, "
                    "resolution and seeds), against the frame-block split: " + "; ".join(
                        f"{a['dataset']}@{a['R']}: {_f(a['block'])} with frame blocks, {_f(a['random'])} at random "
                        f"({a['inflation']:+.3f})" for a in abl) + ". A random split lets near-duplicate video frames "
                    "into both training and test, which is how a published student version of this study reached its "
                    "reported accuracy.")
    else:
        ablation = "Not run in this preset."
    limitations = ("One signer in `asl_alphabet`; the frame-block split removes near-duplicate frames but not the sameness "
                   "of signer, room and light, so in-domain accuracy is still an optimistic measure of generalisation. "
                   "Blocks 1-4 of the backbone are never trained; block 5 is fine-tuned only at "
                   + (", ".join(f"R = {r}" for r in preset.block5.resolutions) or "no resolution")
                   + ", and augmentation is applied only at "
                   + (", ".join(f"R = {r}" for r in preset.augment.resolutions) if preset.augment.views else "no resolution")
                   + ", to fit the preset's time budget. The effects are many comparisons on the same test images; their "
                   "intervals are not corrected for multiplicity, so a single interval just excluding zero is weak evidence. "
                   "Labels missing from one dataset are not scored across datasets.")
    a, b5 = preset.augment, preset.block5
    remedies_method = (
        f"- **Augmentation** (`<dataset>/aug{a.views}`, at R in {', '.join(map(str, a.resolutions))}): {a.views} augmented "
        f"views of every training image, drawn per image with dm-pix: a random resized crop (side {a.crop_scale[0]:g}-"
        f"{a.crop_scale[1]:g} of the image) turned by up to {a.max_rotation:g} degrees, brightness (+-{a.brightness:g}), "
        f"contrast ({a.contrast[0]:g}-{a.contrast[1]:g}), saturation ({a.saturation[0]:g}-{a.saturation[1]:g}) and hue "
        f"(+-{a.hue:g}) jitter, grayscale (p = {a.grayscale:g}) and Gaussian blur (p = {a.blur:g}, sigma "
        f"{a.blur_sigma[0]:g}-{a.blur_sigma[1]:g} px); no horizontal flip, which swaps the signing hand. Each view's "
        "features are cached; each epoch shows every image once, as itself or one of its views.\n"
        f"- **Block 5 fine-tuned** (`<dataset>/ft5`, at R in {', '.join(map(str, b5.resolutions))}): VGG16's last block "
        f"and the head, starting from ImageNet and from the frozen baseline's head, trained together with AdamW "
        f"(learning rate {b5.learning_rate:g}, batch {b5.batch_size}, at most {b5.epochs} epochs, patience {b5.patience}) on "
        "the block-4 maps cached in the features pass; scored from the features of its own block 5.\n"
        "- **Target data**: multi-source models train on the union of the datasets' training splits (shared labels); "
        f"few-shot models add k in {', '.join(map(str, preset.few_shot))} labelled images per letter of the target's training "
        "split to the source's, spread over the target's recording and drawn per seed.\n"
        "- **Paired differences.** Each effect is the difference of two models' (or one model's at two test resolutions) "
        "mean accuracy on the same test images, with its interval over the table's bootstrap resamples."
        if not preset.train.finetune else "- The image-level fine-tuning mode: block 5 and the head trained on images.")
    values = {
        "preset": preset.name, "scope": scope, "data_table": "\n".join(data),
        "max_blocks": preset.split.max_blocks, "fractions": "/".join(f"{x:g}" for x in preset.split.fractions),
        "guard": preset.split.guard_frames, "min_distances": ", ".join(dists) or "not applicable",
        "weights_source": nums["weights"]["source"], "weights_sha": nums["weights"]["sha256"][:16],
        "weights_params": f"{nums['weights']['parameters']:,}", "preprocessing": "torchvision",
        "head": {"mlp": "An MLP head (one hidden layer, ReLU, dropout)",
                 "seed": "The original study's head (batch norm, two hidden layers)"}[preset.train.head],
        "confidence": f"{preset.eval.confidence * 100:g}",
        "lr": f"{preset.train.learning_rate:g}", "wd": f"{preset.train.weight_decay:g}", "batch": preset.train.batch_size,
        "epochs": preset.train.epochs, "patience": preset.train.patience, "seeds": ", ".join(map(str, preset.seeds)),
        "train_res": ", ".join(map(str, preset.train_resolutions)), "eval_res": ", ".join(map(str, preset.eval_resolutions)),
        "bootstrap": preset.eval.bootstrap, "comparison_table": table_markdown(rows, preset.eval.confidence, info["separability"]), "ablation": ablation,
        "discussion": discussion, "limitations": limitations, "remedies": _remedies(nums),
        "remedies_method": remedies_method, "effects_table": effects_markdown(nums["effects"]) if nums["effects"] else "No effects (one dataset).",
        "data_dir_hint": "../shared/data" if preset.name == "cpu" else "data",
    }
    return template.format_map(values)


def run_report(out_dir: Path, paper_dir: Path = Path("paper"), echo=print) -> list[Path]:
    """Write the tables, figures and paper of the results in `out_dir`; nothing if incomplete."""
    from study.files import write_json_atomic, write_text_atomic

    import hashlib

    from study.units import is_done, listed, mark_done

    out_dir, paper_dir = Path(out_dir), Path(paper_dir)
    info, models, rows = check_complete(out_dir)
    template = (Path(__file__).parent / "paper_template.md").read_text()
    # The report's inputs, by content: unchanged inputs and present outputs mean nothing to do.
    h = hashlib.sha256(template.encode())
    inputs = [out_dir / n for n in ("table.csv", "datasets.json", "weights.json")]
    inputs += [out_dir / "separability.csv"] if (out_dir / "separability.csv").is_file() else []
    inputs += sorted((out_dir / "models").glob("*/seed*/history.json")) + sorted((out_dir / "eval").rglob("*.json"))
    inputs += sorted((out_dir / "gradcam" / "figures").glob("overview.*"))
    for p in inputs:
        h.update(p.read_bytes())
    spec = {"kind": "report", "version": REPORT_VERSION, "inputs": h.hexdigest()}
    # Done: the same inputs, every file it wrote intact, and those files are where this run
    # puts them (another --paper-dir is other outputs).
    outputs = [out_dir / "table.md", out_dir / "paper_numbers.json", paper_dir / "paper.md", paper_dir / "tables" / "comparison.tex"]
    outputs += [paper_dir / "figures" / f"{f.__name__}.{e}" for f in FIGURES for e in ("png", "pdf")]
    if is_done(out_dir / "report.json", spec, force=True) and {p.resolve() for p in outputs} <= listed(out_dir / "report.json"):
        echo(f"report: up to date ({paper_dir / 'paper.md'})")
        return []
    written = []
    write_text_atomic(out_dir / "table.md", table_markdown(rows, info["preset"].eval.confidence, info["separability"]))
    (paper_dir / "tables").mkdir(parents=True, exist_ok=True)
    write_text_atomic(paper_dir / "tables" / "comparison.tex", table_latex(rows))
    written += [out_dir / "table.md", paper_dir / "tables" / "comparison.tex"]
    written += training_curves(out_dir, models, info["preset"].seeds, paper_dir)
    written += accuracy_vs_resolution(out_dir, rows, paper_dir)
    written += cross_domain_heatmap(rows, paper_dir)
    written += per_letter_f1(out_dir, rows, paper_dir)
    written += cross_domain_confusions(out_dir, rows, paper_dir)
    written += few_shot(out_dir, rows, paper_dir)
    nums = paper_numbers(info, rows, out_dir)
    written += effects(nums["effects"], paper_dir)
    written += gradcam(out_dir, paper_dir)
    write_json_atomic(out_dir / "paper_numbers.json", nums)
    write_text_atomic(paper_dir / "paper.md", _paper(info, rows, nums, template))
    written += [out_dir / "paper_numbers.json", paper_dir / "paper.md"]
    mark_done(out_dir / "report.json", spec, written)
    echo(f"report: {len(written)} files ({out_dir / 'table.md'}, {paper_dir / 'paper.md'}, figures in {paper_dir / 'figures'})")
    return written


FIGURES = (training_curves, accuracy_vs_resolution, cross_domain_heatmap, per_letter_f1, cross_domain_confusions, few_shot,
           effects, gradcam)
REPORT_VERSION = 8
