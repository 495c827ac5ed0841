"""The report's tables: the cross-domain comparison (Markdown and LaTeX), the leakage ablation,
the domain separability and the ranked effects, from the table's rows. Text only."""

from __future__ import annotations

import re

from study.core.names import RANDOM, parse
from study.core.store import RESULTS, Results, name_of
from study.stages.report.differences import QUESTION_TITLES, ordered_effects
from study.stages.report.results import kind


def _cell(row: dict | None) -> str:
    if row is None:
        return "–"
    return (
        f"{row['accuracy']:.3f} [{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}] / {row['macro_f1']:.3f}"
    )


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
    """The results table in Markdown: accuracy with interval and macro-F1 per model and test set."""
    models, cols, cells = comparison(rows)
    lines = [
        f"Accuracy [{confidence * 100:g}% bootstrap interval] / macro-F1, mean over seeds. Rows: models "
        "(train dataset @ training resolution R); columns: test set @ test resolution r (images area-downsampled to "
        "r and resized back to R; – where r > R or not scored: a few-shot or adapted model is scored on its "
        "target only). Across datasets only shared labels count.",
        "",
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    lines += [f"| {m} | " + " | ".join(_cell(cells.get((m, c))) for c in cols) + " |" for m in models]
    abl = ablation_rows(rows)
    if abl:
        lines += [
            "",
            "Leakage ablation: the same images and seeds, split by frame blocks vs at random.",
            "",
            "| dataset @ R | frame-block split | random split | inflation |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {a['dataset']}@{a['R']} | {a['block']:.3f} | {a['random']:.3f} | {a['inflation']:+.3f} |" for a in abl
        ]
    if separability:
        rs = sorted({x["r"] for x in separability}, reverse=True)
        lines += [
            "",
            "Domain separability: accuracy [95% interval] of a linear classifier, trained on the training splits "
            "at R, telling the two datasets' test images apart at r (balanced per label; chance 0.5).",
            "",
            "| datasets @ R | " + " | ".join(f"r = {r}" for r in rs) + " |",
            "|---|" + "---|" * len(rs),
        ]
        for a, b in dict.fromkeys((x["dataset_a"], x["dataset_b"]) for x in separability):
            for R in sorted({x["R"] for x in separability}):
                cell = {x["r"]: x for x in separability if (x["dataset_a"], x["dataset_b"], x["R"]) == (a, b, R)}
                lines.append(
                    f"| {a} vs {b} @ {R} | "
                    + " | ".join(
                        f"{cell[r]['accuracy']:.3f} [{cell[r]['accuracy_ci_low']:.3f}, "
                        f"{cell[r]['accuracy_ci_high']:.3f}]"
                        if r in cell
                        else "–"
                        for r in rs
                    )
                    + " |"
                )
    return "\n".join(lines) + "\n"


def _interval(x: float, lo: float, hi: float, sign: str = "") -> str:
    return f"{x:{sign}.3f} [{lo:{sign}.3f}, {hi:{sign}.3f}]"


_VS = re.compile(r"^(?P<a>\S+)@(?P<R>\d+) vs (?P<b>\S+)@(?P<Rb>\d+) \((?P<what>.+)\)$")


def headline_markdown(rows: list[dict], numbers: dict) -> str:
    """The two compact tables a reader needs first (the README's headline, tested against it,
    and the paper's Tables 1 and 2): `in_domain_markdown` and `remedies_markdown`."""
    return in_domain_markdown(rows, numbers) + "\n" + remedies_markdown(numbers)


def in_domain_markdown(rows: list[dict], numbers: dict) -> str:
    """(a) Each frozen model's accuracy on its own test set and on the other datasets' at r = R."""
    frozen = [
        r for r in rows if kind(r) == "single" and r["eval_res"] == r["train_res"] and ":" not in r["eval_dataset"]
    ]
    tests = list(dict.fromkeys(r["eval_dataset"] for r in frozen))
    models = list(dict.fromkeys((r["train_dataset"], r["train_res"]) for r in frozen))
    cells = {(r["train_dataset"], r["train_res"], r["eval_dataset"]): r for r in frozen}
    chance = max(x["chance"] for x in numbers["cross_domain"]) if numbers["cross_domain"] else None
    lines = [
        "(a) Accuracy [95% interval] of each frozen model (ImageNet VGG16 and a trained head; train dataset @ "
        "resolution R) on each dataset's test split at r = R, mean over seeds; its own test set in bold. "
        "Across datasets only shared labels count" + (f" (chance {chance:.2f})." if chance else "."),
        "",
        "| model | " + " | ".join(f"{t} test" for t in tests) + " |",
        "|---|" + "---:|" * len(tests),
    ]
    for t, R in models:
        out = []
        for e in tests:
            c = cells.get((t, R, e))
            text = "–" if c is None else _interval(c["accuracy"], c["accuracy_ci_low"], c["accuracy_ci_high"])
            out.append(f"**{text}**" if c is not None and e == t else text)
        lines.append(f"| {t}@{R} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def remedies_markdown(numbers: dict) -> str:
    """(b) Each remedy as its paired difference from its frozen baseline (`numbers["effects"]`,
    the report's paper_numbers.json), on the baseline's own test set and on the other datasets'."""
    tests = list(dict.fromkeys(x["test"] for x in numbers["effects"]))
    remedies: dict[tuple[str, str, str], dict[str, dict]] = {}
    for x in numbers["effects"]:
        m = _VS.match(x["effect"]) if x["question"] in ("remedy", "target data") else None
        if m:
            what = re.sub(
                r"all of \w+'s training images added|union of training splits",
                "union of the training splits",
                m["what"],
            )
            remedies.setdefault((f"{m['a']}@{m['R']}", f"{m['b']}@{m['Rb']}", what), {})[x["test"]] = x
    lines = [
        "(b) Each remedy against its frozen baseline (same dataset, R and seeds): the paired difference in accuracy "
        "[simultaneous 95% interval, corrected for every effect the study weighs] at r = R on the same test images, on "
        "the baseline's own test set and on the other dataset's. A few-shot or adapted model is scored on its target "
        "only.",
        "",
        "| remedy | model | vs | own test set | other dataset's test set |",
        "|---|---|---|---:|---:|",
    ]
    for (a, b, what), by_test in sorted(remedies.items(), key=lambda kv: _remedy_order(*kv[0])):
        own_ds = parse(b.split("@")[0]).sources[0]

        def diff(x: dict | None) -> str:
            return "–" if x is None else _interval(x["difference"], *x["ci_family"], sign="+")

        others = [f"{diff(x)}" + (f" ({e})" if len(tests) > 2 else "") for e, x in by_test.items() if e != own_ds]
        lines.append(f"| {what} | {a} | {b} | {diff(by_test.get(own_ds))} | {'; '.join(others) or '–'} |")
    return "\n".join(lines) + "\n"


def _remedy_order(a: str, b: str, what: str) -> tuple:
    """Remedies without target labels first (augmentation, block 5, hand crops, landmarks,
    adaptation), then few-shot by k, then the union."""
    m = parse(a.split("@")[0])
    rank = {
        "augmented": 0,
        "fine-tuned": 1,
        "hand crop": 2,
        "both views": 3,
        "landmarks": 4,
        "adapted": 5,
        "few-shot": 6,
        "multi-source": 7,
    }.get(m.kind, 8)
    return rank, m.k, int(a.split("@")[1]), int(b.split("@")[1]), b


def hand_share_markdown(rows: list[dict]) -> str:
    """Grad-CAM's share of heat in the hand's box, per model and test set (gradcam/hand_share.csv)."""
    lines = [
        "| model | test set | | images with a hand | share of heat in the hand's box [95% interval] | box's share of "
        "the image |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        share = "–" if r["share"] is None else _interval(r["share"], r["share_ci_low"], r["share_ci_high"])
        area = "–" if r["box_area"] is None else f"{r['box_area']:.3f}"
        lines.append(
            f"| {r['model']}@{r['R']} | {r['eval_dataset']} | {r['domain']} | {r['with_hand']} of {r['images']} | "
            f"{share} | {area} |"
        )
    return "\n".join(lines)


def ablation_rows(rows: list[dict]) -> list[dict]:
    """Per random-feature ablation row: its accuracy, the trained baseline's at the same R, and the difference."""
    out = []
    for r in rows:
        if r["train_dataset"].endswith(RANDOM):
            base = r["train_dataset"].removesuffix(RANDOM)
            block = next(
                x
                for x in rows
                if x["train_dataset"] == base
                and x["eval_dataset"] == base
                and x["train_res"] == r["train_res"]
                and x["eval_res"] == r["train_res"]
            )
            out.append(
                {
                    "dataset": base,
                    "R": r["train_res"],
                    "block": block["accuracy"],
                    "random": r["accuracy"],
                    "inflation": round(r["accuracy"] - block["accuracy"], 4),
                }
            )
    return out


def _tex(s: str) -> str:
    return s.replace("_", r"\_").replace("%", r"\%").replace("–", "--")


def table_latex(rows: list[dict]) -> str:
    """The results table as a LaTeX tabular, marked as generated."""
    models, cols, cells = comparison(rows)
    head = " & ".join(_tex(c) for c in cols)
    body = []
    for m in models:
        vals = []
        for c in cols:
            r = cells.get((m, c))
            vals.append(
                "--" if r is None else f"{r['accuracy']:.3f} [{r['accuracy_ci_low']:.3f}, {r['accuracy_ci_high']:.3f}]"
            )
        body.append(f"{_tex(m)} & " + " & ".join(vals) + r" \\")
    return "\n".join(
        [
            f"% Generated by `python -m study.run report` from {RESULTS}/<preset>/{name_of(Results, 'table')}; do not "
            "edit.",
            r"\begin{tabular}{l" + "c" * len(cols) + "}",
            r"\toprule",
            f"model & {head} " + r"\\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            "",
        ]
    )


def resolution_markdown(rows: list[dict]) -> str:
    """(c) The resolution table: each frozen model (R) on each test set at every test
    resolution r, accuracy alone (its interval is in the full table)."""
    frozen = [r for r in rows if kind(r) == "single" and ":" not in r["eval_dataset"]]
    rs = sorted({r["eval_res"] for r in frozen}, reverse=True)
    cells = {(r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"]): r["accuracy"] for r in frozen}
    lines = [
        "(c) Accuracy of each frozen model (trained at R) on each test set at test resolution r (images "
        "area-downsampled to r and resized back to R), mean over seeds; – where r > R. Intervals: the full table "
        "(appendix).",
        "",
        "| model | test set | " + " | ".join(f"r = {r}" for r in rs) + " |",
        "|---|---|" + "---:|" * len(rs),
    ]
    for t, R, e in dict.fromkeys((t, R, e) for t, R, e, _ in cells):
        where = "own" if e == t else "other"
        lines.append(
            f"| {t}@{R} | {e} ({where}) | "
            + " | ".join(f"{cells[t, R, e, r]:.3f}" if (t, R, e, r) in cells else "–" for r in rs)
            + " |"
        )
    return "\n".join(lines) + "\n"


def effects_markdown(effects: list[dict]) -> str:
    """Every effect, by question (`ordered_effects`: cross-domain first), with its own 95%
    interval, its simultaneous one and the verdict the simultaneous one gives."""
    out = []
    for q, xs in ordered_effects(effects).items():
        if not xs:
            continue
        out += [
            f"**{QUESTION_TITLES[q]}** ({len(xs)})",
            "",
            "| effect | test set | difference | 95% interval | simultaneous 95% interval | verdict |",
            "|---|---|---:|---:|---:|---|",
        ]
        out += [
            f"| {x['effect']} | {x['test']} ({x['domain']}) | {x['difference']:+.3f} | [{x['ci'][0]:+.3f}, "
            f"{x['ci'][1]:+.3f}] | "
            f"[{x['ci_family'][0]:+.3f}, {x['ci_family'][1]:+.3f}] | {x['verdict']} |"
            for x in xs
        ]
        out.append("")
    return "\n".join(out).rstrip("\n")
