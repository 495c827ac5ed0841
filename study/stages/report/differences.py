"""The paired differences the paper weighs (docs/method.md): two models, or one model at two
test resolutions, on the same test images, with intervals over the table's bootstrap resamples
(study.core.stats). The effects are one family: each gets its own 95% interval and a
simultaneous one (study.core.stats.simultaneous), and its verdict from the simultaneous one."""

from __future__ import annotations

import numpy as np

from study.core.context import Context
from study.core.names import ADAPTATIONS, parse
from study.core.stats import interval, paired_draws, simultaneous
from study.stages.report.results import cell_evals, kind


def _at_R(rows: list[dict]) -> dict[tuple, dict]:
    """Test-split rows at r = R by (model, R, eval dataset)."""
    return {
        (r["train_dataset"], r["train_res"], r["eval_dataset"]): r
        for r in rows
        if r["eval_res"] == r["train_res"] and ":" not in r["eval_dataset"]
    }


def _correct(ctx: Context, model: tuple, eval_ds: str) -> tuple[np.ndarray, list]:
    """Seeds x images: 1 where the model (name, R, r) was right on `eval_ds`; and the images' labels."""
    name, R, r = model
    evs = cell_evals(ctx, name, R, eval_ds, r)
    return np.stack([np.asarray(e["y_true"]) == np.asarray(e["y_pred"]) for e in evs]).astype(float), evs[0]["y_true"]


def paired(
    ctx: Context, preset, a: tuple, b: tuple, eval_ds: str, minus: tuple[tuple, tuple] | None = None
) -> dict | None:
    """Accuracy of a minus b, each (model, R, r) scored on the same test images of `eval_ds`
    and averaged over its seeds, with the interval over the table's bootstrap resamples
    (docs/method.md); None where the two were scored on different images (other shared
    labels). With `minus` = (c, d): the difference (a - c) - (b - d), a change of an effect.
    `draws` holds its values over the resamples, for the family's simultaneous intervals."""
    (ca, ya), (cb, yb) = _correct(ctx, a, eval_ds), _correct(ctx, b, eval_ds)
    if ya != yb:
        return None
    if minus:
        (cc, yc), (cd, yd) = _correct(ctx, minus[0], eval_ds), _correct(ctx, minus[1], eval_ds)
        if not ya == yc == yd:
            return None
        ca, cb = (
            ca.mean(0, keepdims=True) - cc.mean(0, keepdims=True),
            cb.mean(0, keepdims=True) - cd.mean(0, keepdims=True),
        )
    gain, draws = paired_draws(ca, cb, preset.eval.bootstrap)
    return {"gain": gain, "ci": interval(draws, preset.eval.confidence), "draws": draws}


def paired_gain(effects: list[dict], model: str, baseline: str, R: int, eval_ds: str) -> dict | None:
    """`model` minus `baseline`, both at R and scored at r = R, as the family of effects holds it
    (`effect_rows`): its difference, its own and its simultaneous interval, and its verdict."""
    for x in effects:
        if x["pair"] == [[model, R, R], [baseline, R, R]] and x["test"] == eval_ds:
            return {"gain": x["difference"], "ci": x["ci"], "ci_family": x["ci_family"], "verdict": x["verdict"]}
    return None


def multi_source_rows(rows: list[dict], effects: list[dict]) -> list[dict]:
    """Each multi-source model on each of its sources' test splits (r = R), beside the model
    trained on that source alone, with the paired difference."""
    at = _at_R(rows)
    out = []
    for (t, R, e), r in at.items():
        if kind(r) == "multi-source" and e in parse(t).sources and (e, R, e) in at:
            out.append(
                {
                    "model": f"{t}@{R}",
                    "test": e,
                    "accuracy": r["accuracy"],
                    "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
                    "alone": at[(e, R, e)]["accuracy"],
                    "difference": paired_gain(effects, t, e, R, e),
                }
            )
    return out


def few_shot_rows(rows: list[dict], effects: list[dict]) -> list[dict]:
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
            union = [
                x
                for (u, RR, ee), x in at.items()
                if RR == R and ee == e and kind(x) == "multi-source" and set(parse(u).sources) == {m.sources[0], e}
            ]
            out[key] = {
                "source": m.sources[0],
                "target": e,
                "R": R,
                "k0": at.get((m.sources[0], R, e), {}).get("accuracy"),
                "shots": {},
                "all": union[0]["accuracy"] if union else None,
                "target_alone": at.get((e, R, e), {}).get("accuracy"),
            }
        out[key]["shots"][str(m.k)] = r["accuracy"]
    for v in out.values():
        v["shots"] = dict(sorted(v["shots"].items(), key=lambda kv: int(kv[0])))
        k_max = list(v["shots"])[-1]
        v["k_max"] = int(k_max)
        v["gain_k_max"] = (
            paired_gain(effects, f"{v['source']}+{k_max}shot({v['target']})", v["source"], v["R"], v["target"])
            if v["k0"] is not None
            else None
        )
    return list(out.values())


# The questions the effects answer, in the order the paper takes them, with their titles.
QUESTION_TITLES = {
    "remedy": "Remedies without target labels, against the frozen baseline",
    "target data": "Labelled target data: few-shot and the union of training splits",
    "test resolution": "A lower test resolution r against r = R",
    "remedy x test resolution": "How a remedy changes the effect of the lowest r",
    "training resolution": "Training at the higher resolution R",
}
PER_PANEL = 14  # effects drawn per question in the paper's figure


def expected(x: dict) -> bool:
    """An effect expected by construction: an in-domain loss from a lower test resolution
    (fewer pixels of the same recording). Reported in one line and the appendix."""
    return x["question"] == "test resolution" and x["domain"] == "in-domain"


def ordered_effects(effects: list[dict], expected_too: bool = True) -> dict[str, list[dict]]:
    """The effects by question (QUESTION_TITLES' order), in each the cross-domain ones first,
    then those whose simultaneous interval excludes 0, then by size; without the effects
    `expected` by construction unless `expected_too`."""
    out = {q: [] for q in QUESTION_TITLES}
    for x in effects:
        if expected_too or not expected(x):
            out.setdefault(x["question"], []).append(x)
    for xs in out.values():
        xs.sort(
            key=lambda x: (x["domain"] != "cross-domain", x["verdict"] == "no clear difference", -abs(x["difference"]))
        )
    return out


def verdict(ci: list[float]) -> str:
    """What an interval of a difference says: higher, lower, or no clear difference."""
    return "higher" if ci[0] > 0 else "lower" if ci[1] < 0 else "no clear difference"


def effect_rows(rows: list[dict], ctx: Context, preset) -> tuple[list[dict], dict]:
    """Every effect the discussion weighs, as paired differences on the same test images
    (test splits), ranked: those whose simultaneous interval excludes 0 first, then by size;
    and the family's correction (`correct`). Each effect names its two sides in `pair`
    ([model, R, r] each).

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
    at = {
        (r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"]): r
        for r in rows
        if ":" not in r["eval_dataset"]
    }
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
        out.append(
            {
                "question": question,
                "effect": effect,
                "test": e,
                "pair": [list(a), list(b)],
                "domain": "in-domain" if e in base.sources else "cross-domain",
                "target_images": target_images,
                "a": at[a[0], a[1], e, a[2]]["accuracy"],
                "b": at[b[0], b[1], e, b[2]]["accuracy"],
                "difference": d["gain"],
                "ci": d["ci"],
                "draws": d["draws"],
            }
        )

    for t, R in models:
        m = parse(t)
        for e in tests:
            if m.landmark_views:  # against the landmark model without augmented hands
                plain = f"{m.sources[0]}/landmarks"
                add("remedy", f"{t}@{R} vs {plain}@{R} (augmented landmarks)", (t, R, R), (plain, R, R), e)
            elif m.kind == "landmarks":  # no R of its own: against the frozen model at each R
                for RR in preset.train_resolutions:
                    add(
                        "remedy",
                        f"{t}@{R} vs {m.sources[0]}@{RR} (landmark classifier)",
                        (t, R, R),
                        (m.sources[0], RR, RR),
                        e,
                    )
            elif m.kind == "both views":
                add(
                    "remedy",
                    f"{t}@{R} vs {m.sources[0]}@{R} (hand crops and landmarks)",
                    (t, R, R),
                    (m.sources[0], R, R),
                    e,
                )
            elif m.remedy:
                b = m.sources[0]
                what = {"augmented": "augmented views", "fine-tuned": "block 5 fine-tuned", "hand crop": "hand crops"}[
                    m.kind
                ]
                add("remedy", f"{t}@{R} vs {b}@{R} ({what})", (t, R, R), (b, R, R), e)
                rs = preset.eval_resolutions_for(R)
                if len(rs) > 1:
                    r = rs[-1]
                    add(
                        "remedy x test resolution",
                        f"{t}@{R} vs {b}@{R}: effect of r = {r} instead of {R}",
                        (t, R, r),
                        (b, R, r),
                        e,
                        minus=((t, R, R), (b, R, R)),
                    )
            elif m.kind == "adapted":
                if e == m.target:
                    add(
                        "remedy",
                        f"{t}@{R} vs {m.sources[0]}@{R} ({ADAPTATIONS[m.adapt]} on {e}'s unlabelled images)",
                        (t, R, R),
                        (m.sources[0], R, R),
                        e,
                    )
            elif m.kind == "few-shot":
                ks = sorted(
                    {
                        parse(x).k
                        for x, RR in models
                        if RR == R
                        and parse(x).kind == "few-shot"
                        and parse(x).sources == m.sources
                        and parse(x).target == m.target
                    }
                )
                if m.k in (ks[0], ks[-1]) and e == m.target:
                    add(
                        "target data",
                        f"{t}@{R} vs {m.sources[0]}@{R} ({m.k} target image{'s' if m.k > 1 else ''} per letter)",
                        (t, R, R),
                        (m.sources[0], R, R),
                        e,
                        target_images=True,
                    )
            elif m.kind == "multi-source":
                for s in m.sources:
                    added = (
                        f"all of {e}'s training images added"
                        if e in m.sources and e != s
                        else "union of training splits"
                    )
                    add(
                        "target data",
                        f"{t}@{R} vs {s}@{R} ({added})",
                        (t, R, R),
                        (s, R, R),
                        e,
                        target_images=e in m.sources and e != s,
                    )
            if m.kind in ("single", "augmented", "fine-tuned", "hand crop"):
                for r in preset.eval_resolutions_for(R)[1:]:
                    add("test resolution", f"{t}@{R} tested at r = {r} vs r = {R}", (t, R, r), (t, R, R), e)
            if m.kind == "single":
                lower = [RR for tt, RR in models if tt == t and RR < R]
                if lower:
                    add(
                        "training resolution", f"{t}@{R} vs {t}@{max(lower)}", (t, R, R), (t, max(lower), max(lower)), e
                    )
    family = correct(out, preset.eval.confidence)
    out.sort(key=lambda x: (x["verdict"] == "no clear difference", -abs(x["difference"])))
    return out, family


def correct(effects: list[dict], confidence: float) -> dict:
    """The family's correction for multiplicity, in place: each effect's simultaneous interval
    (`ci_family`, study.core.stats.simultaneous over every effect's resamples) and its verdict
    from it (`verdict`; `verdict_alone` from its own interval); the resamples are dropped.
    Why simultaneous intervals rather than Holm's p-values: the paper prints an interval
    beside every verdict, and this gives one that agrees with the verdict; it uses how the
    effects move together (they share models and test images), so it is less conservative
    than Bonferroni; and its cut-off is the 95th percentile of the resampled maxima, which
    1,000 resamples estimate well, where Holm's first threshold (0.05 / M) lies below the
    resolution of 1,000 resampled p-values."""
    if not effects:
        return {
            "method": "max-|t| bootstrap simultaneous intervals",
            "family": 0,
            "critical": None,
            "verdicts_changed": 0,
        }
    c, cis = simultaneous(
        np.array([x["difference"] for x in effects]), np.stack([x.pop("draws") for x in effects]), confidence
    )
    for x, ci in zip(effects, cis):
        x["ci_family"] = [float(ci[0]), float(ci[1])]
        x["verdict"], x["verdict_alone"] = verdict(x["ci_family"]), verdict(x["ci"])
    return {
        "method": "max-|t| bootstrap simultaneous intervals",
        "family": len(effects),
        "confidence": confidence,
        "critical": round(c, 4),
        "verdicts_changed": sum(x["verdict"] != x["verdict_alone"] for x in effects),
    }
