"""Scoring: every model on every dataset's test splits at every degradation r, with intervals.

Across datasets only the labels both have count: test images of other labels are dropped and
the model's logits are restricted to the shared labels before the arg-max (26 letters plus
nothing between the Kaggle sets and Lexset). In-domain, the labels are the dataset's own.
Macro-F1 averages over the labels present in the scored images. Intervals are percentile
bootstraps over test images; for the mean over seeds the same resamples are applied to every
seed (a paired bootstrap), so the interval is of the seed-averaged score. Models and
features are read through study.core.store; a fine-tuned model's features (of its own backbone)
are computed by the features stage before this one runs.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from study.core import store
from study.core.context import Context
from study.core.files import write_text_atomic
from study.core.hand import no_hand
from study.core.labels import CANONICAL, label_name
from study.core.names import RANDOM, eval_name, parse
from study.core.plan import Evaluation, Unit
from study.core.stats import bootstrap_counts, interval
from study.core.units import fingerprint, is_done, mark_done
from study.datasets import open_builder
from study.datasets.build import read_index
from study.network.model import head_from_arrays, predict_logits

# Bump when scoring changes what it produces, so that existing evaluations count as stale.
EVAL_VERSION = 1
# Bump when what a folder's evaluation records of each photo changes (`score`): the study's own
# evaluations do not record it, and keep their fingerprints. 2: every label's probability.
PER_PHOTO_VERSION = 2


def restricted_predictions(
    logits_NxK: np.ndarray, labels_N: np.ndarray, classes: list[int], choose: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the images whose label is in `classes`; predict the arg-max over `choose` (default:
    those classes only, the cross-domain protocol's rule)."""
    keep = np.isin(labels_N, classes)
    choose = np.asarray(sorted(classes if choose is None else choose))
    pred = choose[np.argmax(logits_NxK[keep][:, choose], axis=1)]
    return labels_N[keep], pred


def macro_f1_weighted(y_true: np.ndarray, y_pred: np.ndarray, w_BxN: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Macro-F1 over `labels` for each row of sample weights (bootstrap counts), vectorised."""
    tp_ind = (y_true[:, None] == labels) & (y_pred[:, None] == labels)  # N x L
    fp_ind = (y_pred[:, None] == labels) & (y_true[:, None] != labels)
    fn_ind = (y_true[:, None] == labels) & (y_pred[:, None] != labels)
    tp, fp, fn = (w_BxN @ m.astype(np.float64) for m in (tp_ind, fp_ind, fn_ind))
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(axis=1)


def score(y_true: np.ndarray, y_pred: np.ndarray, B: int, confidence: float, seed: int = 0) -> dict:
    """Accuracy, macro-F1, their bootstrap intervals, the report and the confusion matrix."""
    labels = np.unique(y_true)
    n = len(y_true)
    acc = float((y_true == y_pred).mean())
    f1 = float(macro_f1_weighted(y_true, y_pred, np.ones((1, n)), labels)[0])
    w = bootstrap_counts(n, B, seed)
    acc_b = (w @ (y_true == y_pred)) / n
    f1_b = macro_f1_weighted(y_true, y_pred, w, labels)
    names = [CANONICAL[i] for i in labels]
    cm_labels = np.unique(np.concatenate([y_true, y_pred]))
    with warnings.catch_warnings():  # a one-label test set (a user's folder) is fine: no warning to print
        warnings.simplefilter("ignore", UserWarning)
        report = classification_report(
            y_true, y_pred, labels=labels, target_names=names, output_dict=True, zero_division=0
        )
        text = classification_report(y_true, y_pred, labels=labels, target_names=names, zero_division=0, digits=3)
        matrix = confusion_matrix(y_true, y_pred, labels=cm_labels).tolist()
    return {
        "n": n,
        "accuracy": acc,
        "accuracy_ci": interval(acc_b, confidence),
        "macro_f1": f1,
        "macro_f1_ci": interval(f1_b, confidence),
        "report": report,
        "report_text": text,
        "confusion": {"labels": [label_name(i) for i in cm_labels], "matrix": matrix},
        "y_true": y_true.tolist(),
        "y_pred": y_pred.tolist(),
    }


def run_stage(ctx: Context) -> list[dict]:
    """The `evaluate` command: every evaluation of the plan; `table.csv`."""
    rows = run_evaluations(ctx, ctx.plan.evaluations())
    ctx.echo(f"table: {len(rows)} rows -> {ctx.results.table}")
    return rows


def run_folder(ctx: Context) -> list[dict]:
    """`score`: every scorable model on the folder being scored, under score/<name>/, at r = R
    (at every r with `--every-r`). A model chooses among every label it knows, or among the
    folder's (study.core.plan.Plan.choices); each record also names the photo of each
    prediction and its probabilities."""
    name = ctx.scoring
    files = {s: v["file"] for s, v in read_index(open_builder(ctx, name)).items()}

    def choose(model):
        return ctx.plan.choices(model, name, ctx.folder_labels_only)

    todo = ctx.plan.evaluations(store.scorable(ctx), [name], ctx.every_r)
    return run_evaluations(ctx, todo, store.score_files(ctx, name), choose, files)


def run_evaluations(
    ctx: Context,
    todo: list[Evaluation],
    where: store.Results | store.ScoreFiles | None = None,
    choose=None,
    files: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Score each evaluation of `todo` that is not done, results in `where` (default: the
    results folder's eval/; a scored folder's), and write its table. `choose(model)`: the labels a model
    chooses among (default: those it shares with the test set); `files`: each split's file
    names, recorded with each prediction and its probability (a folder of photos)."""
    where = where or ctx.results
    heads: dict = {}
    t0 = time.perf_counter()
    done = 0
    for train_ds, R, seed, eval_ds, split, r in todo:
        path = where.evaluation(train_ds, R, seed, eval_ds, split, r)
        classes = ctx.plan.shared_classes(train_ds, eval_ds)
        model_rec = store.model_record(ctx, train_ds, R, seed)
        # A fine-tuned model has its own backbone: it is scored from features of that backbone.
        wsha = model_rec.get("backbone_sha256")
        if eval_ds.endswith(RANDOM):
            test, fps = store.random_split(ctx, eval_ds, R)
            x, y = test["test"]
            feats_fp = fingerprint({**fps, "random_split_seed": store.RANDOM_SPLIT_SEED})
        else:
            unit = Unit(eval_ds, split, R, r, weights=wsha, hand=parse(train_ds).input)
            feats_fp = store.features_fingerprint(ctx, unit)
        spec = {
            "kind": "eval",
            "version": EVAL_VERSION,
            "model": model_rec["fingerprint"],
            "features": feats_fp,
            "classes": classes,
            "eval": dataclasses.asdict(ctx.preset.eval),
        }
        choices = None if choose is None else choose(train_ds)
        if choices is not None:  # only a folder's evaluations have the keys: the study's keep their fingerprints
            spec |= {"choose": choices, "per_photo": PER_PHOTO_VERSION}
        if is_done(path, spec, force=ctx.force):
            continue
        if not eval_ds.endswith(RANDOM):
            x, y, _ = store.load_features(ctx, unit)
        key = (train_ds, R, seed)
        if key not in heads:
            heads[key] = head_from_arrays(
                ctx.preset.train.head, store.head_arrays(ctx, *key), x.shape[1], len(CANONICAL), seed
            )
        logits = predict_logits(heads[key], x, len(CANONICAL))
        y_true, y_pred = restricted_predictions(logits, y, classes, choices)
        found = None
        if parse(train_ds).input == "landmarks":  # an image without a hand: `nothing`, or wrong
            found = store.load_found(ctx, eval_ds, split)
            y_pred = no_hand(y_pred, found[np.isin(y, classes)], classes if choices is None else choices)
        s = score(y_true, y_pred, ctx.preset.eval.bootstrap, ctx.preset.eval.confidence, seed=0)
        info = {
            "train_dataset": train_ds,
            "train_res": R,
            "seed": seed,
            "eval_dataset": eval_ds,
            "split": split,
            "eval_res": r,
            "labels": [CANONICAL[i] for i in classes],
            "in_domain": eval_ds in parse(train_ds).sources,
        }
        if files is not None:
            info |= _per_image(logits, y, classes, choices, files[split], found)
        report = path.with_suffix(".txt")
        write_text_atomic(report, f"{train_ds}@{R} seed {seed} on {eval_ds}/{split} at r={r}\n\n{s['report_text']}")
        mark_done(path, spec, [report], **info, **s)
        done += 1
    if done:
        ctx.echo(f"evaluations: {done} written in {time.perf_counter() - t0:.1f} s")
    rows = table_rows(ctx, todo, where)
    store.write_table(rows, where.table)
    return rows


def table_rows(ctx: Context, todo: list[Evaluation], where: store.Results | store.ScoreFiles) -> list[dict]:
    """One row per (train dataset, R, eval dataset/split, r): mean and sd over seeds, paired bootstrap."""
    groups: dict = {}
    for train_ds, R, seed, eval_ds, split, r in todo:
        rec = json.loads(where.evaluation(train_ds, R, seed, eval_ds, split, r).read_text())
        groups.setdefault((train_ds, R, eval_name(eval_ds, split), r), []).append(rec)
    rows = []
    B, conf = ctx.preset.eval.bootstrap, ctx.preset.eval.confidence
    for (train_ds, R, eval_ds, r), recs in groups.items():
        n = recs[0]["n"]
        w = bootstrap_counts(n, B, seed=0)  # the same resamples for every seed: paired
        correct = np.stack([np.asarray(x["y_true"]) == np.asarray(x["y_pred"]) for x in recs])  # seeds x n
        acc_b = (w @ correct.T / n).mean(axis=1)
        acc = np.array([x["accuracy"] for x in recs])
        f1 = np.array([x["macro_f1"] for x in recs])

        def sd(a):
            return float(a.std(ddof=1)) if len(a) > 1 else 0.0

        low, high = interval(acc_b, conf)
        rows.append(
            {
                "train_dataset": train_ds,
                "train_res": R,
                "eval_dataset": eval_ds,
                "eval_res": r,
                "n": n,
                "accuracy": float(acc.mean()),
                "accuracy_sd": sd(acc),
                "accuracy_ci_low": low,
                "accuracy_ci_high": high,
                "macro_f1": float(f1.mean()),
                "macro_f1_sd": sd(f1),
            }
        )
    return rows


def _per_image(
    logits_NxK: np.ndarray,
    labels_N: np.ndarray,
    classes: list[int],
    choose: list[int],
    files_N: np.ndarray,
    found_N: np.ndarray | None = None,
) -> dict:
    """Which photo each scored prediction is of, the probability of the label predicted and of
    every label chosen among (softmax over `choose`, in the order of `choose_from`; what `score`
    averages over a model's seeds); None for a landmark model's photo without a hand, whose
    prediction no probability made."""
    keep = np.isin(labels_N, classes)
    z = logits_NxK[keep][:, sorted(choose)]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    prob, probs = np.round(p.max(axis=1), 4).tolist(), np.round(p, 6).tolist()
    if found_N is not None:
        prob = [x if f else None for x, f in zip(prob, found_N[keep])]
        probs = [x if f else None for x, f in zip(probs, found_N[keep])]
    return {
        "choose_from": [CANONICAL[c] for c in sorted(choose)],
        "photos": [f.decode() if isinstance(f, bytes) else str(f) for f in files_N[keep]],
        "probability": prob,
        "probabilities": probs,
    }
