"""The paired differences the paper weighs (docs/method.md): two models, or one model at two
test resolutions, on the same test images, with intervals over the table's bootstrap resamples
(study.core.stats). Every effect is ranked and gets a verdict from its interval."""

from __future__ import annotations

import numpy as np

from study.core.context import Context
from study.core.names import ADAPTATIONS, parse
from study.core.stats import paired_difference
from study.stages.report.results import cell_evals, kind


def _at_R(rows: list[dict]) -> dict[tuple, dict]:
    """Test-split rows at r = R by (model, R, eval dataset)."""
    return {(r["train_dataset"], r["train_res"], r["eval_dataset"]): r for r in rows
            if r["eval_res"] == r["train_res"] and ":" not in r["eval_dataset"]}


def _correct(ctx: Context, model: tuple, eval_ds: str) -> tuple[np.ndarray, list]:
    """Seeds x images: 1 where the model (name, R, r) was right on `eval_ds`; and the images' labels."""
    name, R, r = model
    evs = cell_evals(ctx, name, R, eval_ds, r)
    return np.stack([np.asarray(e["y_true"]) == np.asarray(e["y_pred"]) for e in evs]).astype(float), evs[0]["y_true"]


def paired(ctx: Context, preset, a: tuple, b: tuple, eval_ds: str, minus: tuple[tuple, tuple] | None = None) -> dict | None:
    """Accuracy of a minus b, each (model, R, r) scored on the same test images of `eval_ds`
    and averaged over its seeds, with the interval over the table's bootstrap resamples
    (docs/method.md); None where the two were scored on different images (other shared
    labels). With `minus` = (c, d): the difference (a - c) - (b - d), a change of an effect."""
    (ca, ya), (cb, yb) = _correct(ctx, a, eval_ds), _correct(ctx, b, eval_ds)
    if ya != yb:
        return None
    if minus:
        (cc, yc), (cd, yd) = _correct(ctx, minus[0], eval_ds), _correct(ctx, minus[1], eval_ds)
        if not ya == yc == yd:
            return None
        ca, cb = ca.mean(0, keepdims=True) - cc.mean(0, keepdims=True), cb.mean(0, keepdims=True) - cd.mean(0, keepdims=True)
    gain, ci = paired_difference(ca, cb, preset.eval.bootstrap, preset.eval.confidence)
    return {"gain": gain, "ci": ci}


def paired_gain(ctx: Context, preset, model: str, baseline: str, R: int, eval_ds: str) -> dict | None:
    """`model` minus `baseline`, both at R and scored at r = R (see `paired`)."""
    return paired(ctx, preset, (model, R, R), (baseline, R, R), eval_ds)


def multi_source_rows(rows: list[dict], ctx: Context, preset) -> list[dict]:
    """Each multi-source model on each of its sources' test splits (r = R), beside the model
    trained on that source alone, with the paired difference."""
    at = _at_R(rows)
    out = []
    for (t, R, e), r in at.items():
        if kind(r) == "multi-source" and e in parse(t).sources and (e, R, e) in at:
            out.append({"model": f"{t}@{R}", "test": e, "accuracy": r["accuracy"], "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
                        "alone": at[(e, R, e)]["accuracy"], "difference": paired_gain(ctx, preset, t, e, R, e)})
    return out


def few_shot_rows(rows: list[dict], ctx: Context, preset) -> list[dict]:
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
        v["gain_k_max"] = (paired_gain(ctx, preset, f"{v['source']}+{k_max}shot({v['target']})", v["source"], v["R"], v["target"])
                           if v["k0"] is not None else None)
    return list(out.values())


def verdict(ci: list[float]) -> str:
    """What an interval of a difference says: higher, lower, or no clear difference."""
    return "higher" if ci[0] > 0 else "lower" if ci[1] < 0 else "no clear difference"


def effect_rows(rows: list[dict], ctx: Context, preset) -> list[dict]:
    """Every effect the discussion weighs, as paired differences on the same test images
    (test splits), ranked: those whose interval excludes 0 first, then by size.

    - remedy: an augmented, fine-tuned or hand-crop model against its frozen baseline (same
      dataset, R, seeds), at r = R, on every test set; a landmark model against the frozen
      model of its dataset at each R, with augmented landmarks against the one without; a
      model on both views against the frozen model; an adapted model against its source's, on its target;
      `target_images` False (an adapted model saw the target's images, never a label).
    - target data: a few-shot model (the smallest and the largest k) against its source's
      model, on the target; a multi-source model against each source's model, on every test
      set; `target_images` True where the test set's images were among its training data.
    - training resolution: a dataset's model at each R against the next lower R (r = R).
    - test resolution: a single-dataset, augmented, fine-tuned or hand-crop model at r < R against r = R.
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
        d = paired(ctx, preset, a, b, e, minus)
        if d is None:
            return
        base = parse(b[0])
        out.append({"question": question, "effect": effect, "test": e,
                    "domain": "in-domain" if e in base.sources else "cross-domain", "target_images": target_images,
                    "a": at[a[0], a[1], e, a[2]]["accuracy"], "b": at[b[0], b[1], e, b[2]]["accuracy"],
                    "difference": d["gain"], "ci": d["ci"], "verdict": verdict(d["ci"])})

    for t, R in models:
        m = parse(t)
        for e in tests:
            if m.landmark_views:  # against the landmark model without augmented hands
                plain = f"{m.sources[0]}/landmarks"
                add("remedy", f"{t}@{R} vs {plain}@{R} (augmented landmarks)", (t, R, R), (plain, R, R), e)
            elif m.kind == "landmarks":  # no R of its own: against the frozen model at each R
                for RR in preset.train_resolutions:
                    add("remedy", f"{t}@{R} vs {m.sources[0]}@{RR} (landmark classifier)", (t, R, R), (m.sources[0], RR, RR), e)
            elif m.kind == "both views":
                add("remedy", f"{t}@{R} vs {m.sources[0]}@{R} (hand crops and landmarks)", (t, R, R), (m.sources[0], R, R), e)
            elif m.remedy:
                b = m.sources[0]
                what = {"augmented": "augmented views", "fine-tuned": "block 5 fine-tuned", "hand crop": "hand crops"}[m.kind]
                add("remedy", f"{t}@{R} vs {b}@{R} ({what})", (t, R, R), (b, R, R), e)
                rs = preset.eval_resolutions_for(R)
                if len(rs) > 1:
                    r = rs[-1]
                    add("remedy x test resolution", f"{t}@{R} vs {b}@{R}: effect of r = {r} instead of {R}",
                        (t, R, r), (b, R, r), e, minus=((t, R, R), (b, R, R)))
            elif m.kind == "adapted":
                if e == m.target:
                    add("remedy", f"{t}@{R} vs {m.sources[0]}@{R} ({ADAPTATIONS[m.adapt]} on {e}'s unlabelled images)",
                        (t, R, R), (m.sources[0], R, R), e)
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
            if m.kind in ("single", "augmented", "fine-tuned", "hand crop"):
                for r in preset.eval_resolutions_for(R)[1:]:
                    add("test resolution", f"{t}@{R} tested at r = {r} vs r = {R}", (t, R, r), (t, R, R), e)
            if m.kind == "single":
                lower = [RR for tt, RR in models if tt == t and RR < R]
                if lower:
                    add("training resolution", f"{t}@{R} vs {t}@{max(lower)}", (t, R, R), (t, max(lower), max(lower)), e)
    out.sort(key=lambda x: (x["verdict"] == "no clear difference", -abs(x["difference"])))
    return out
