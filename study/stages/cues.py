"""`cues` (part of `evaluate`): the trivial-cue checks of every pair of datasets (study.diagnostics.cues).

The frame check reads the stored images' outer ring; the border and hand-crop checks read
cached features (study.core.store). Each check's domain classifier is the separability's
(study.diagnostics.separability); one unit per pair and check under `<out>/cues/`, one row
each in `cues.csv`.
"""

from __future__ import annotations

import numpy as np

from study.core import store
from study.core.context import Context
from study.core.files import write_csv_unless_same
from study.core.plan import CUE_TRIM, Unit
from study.core.splits import BALANCE_SEED, balanced
from study.core.stats import mean_interval
from study.core.units import is_done, mark_done, read_marker
from study.datasets import open_builder
from study.datasets.build import read_index
from study.diagnostics.cues import ring
from study.diagnostics.separability import domain_classifier
from study.diagnostics.separability import sides as balanced_sides

VERSION = 1
COLUMNS = [
    "dataset_a",
    "dataset_b",
    "check",
    "R",
    "n_train",
    "n_test",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
]


def _frame_sides(ctx: Context, a: str, b: str, split: str, shared: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The rings of a split's stored images of both datasets, balanced per label as the
    separability's, and which dataset each is from (0: a, 1: b)."""
    ya, yb = (read_index(open_builder(ctx, d))[split]["label"] for d in (a, b))
    ia, ib = balanced(ya, yb, shared)
    rings = []
    for d, idx in ((a, ia), (b, ib)):
        source = open_builder(ctx, d).as_data_source()[split]
        rings.append(
            np.concatenate(
                [
                    ring(np.stack([r["image"] for r in source.__getitems__(idx[s : s + 256].tolist())]))
                    for s in range(0, len(idx), 256)
                ]
            )
            if len(idx)
            else np.zeros((0, 1), np.float32)
        )
    return np.concatenate(rings), np.concatenate([np.zeros(len(ia), int), np.ones(len(ib), int)])


def _feature_sides(
    ctx: Context, a: str, b: str, split: str, R: int, shared: list[int], **view
) -> tuple[np.ndarray, np.ndarray]:
    """Features of a split's images of both datasets (`view`: trim or hand, study.core.plan.Unit),
    balanced per label as the separability's, and which dataset each is from."""
    xa, ya, _ = store.load_features(ctx, Unit(a, split, R, R, **view))
    xb, yb, _ = store.load_features(ctx, Unit(b, split, R, R, **view))
    return balanced_sides(xa, ya, xb, yb, shared)


def run_stage(ctx: Context) -> list[dict]:
    """Both checks for every pair of the plan that is not done, then `cues.csv`."""
    p = ctx.preset
    if p.train.finetune or not ctx.plan.separability_pairs:
        return []
    R = min(p.train_resolutions)
    rows = []
    for a, b, shared in ctx.plan.separability_pairs:
        base = {
            "kind": "cues",
            "version": VERSION,
            "classes": shared,
            "seed": BALANCE_SEED,
            "bootstrap": p.eval.bootstrap,
            "confidence": p.eval.confidence,
        }
        checks = {
            "frame": (
                "frame",
                base | {"datasets": {d: ctx.dataset_fingerprint(d) for d in (a, b)}, "storage": p.storage_size},
                lambda split: _frame_sides(ctx, a, b, split, shared),
                None,
            ),
            f"no {CUE_TRIM}-pixel border": (
                f"no {CUE_TRIM}-pixel border",
                base
                | {
                    "features": {
                        f"{d}/{s}": store.features_fingerprint(ctx, Unit(d, s, R, R, trim=CUE_TRIM))
                        for d in (a, b)
                        for s in ("train", "test")
                    }
                },
                lambda split: _feature_sides(ctx, a, b, split, R, shared, trim=CUE_TRIM),
                R,
            ),
        }
        if p.hands.crops:
            for RR in p.train_resolutions:
                checks[f"hand crop R{RR}"] = (
                    "hand crop",
                    base
                    | {
                        "features": {
                            f"{d}/{s}": store.features_fingerprint(ctx, Unit(d, s, RR, RR, hand="crop"))
                            for d in (a, b)
                            for s in ("train", "test")
                        }
                    },
                    lambda split, RR=RR: _feature_sides(ctx, a, b, split, RR, shared, hand="crop"),
                    RR,
                )
        for stem, (check, spec, sides, at) in checks.items():
            path = ctx.results.cue_unit(a, b, stem)
            if not is_done(path, spec, force=ctx.force):
                x, domain = sides("train")
                clf = domain_classifier(x, domain)
                tx, tdomain = sides("test")
                correct = (clf.predict(tx) == tdomain).astype(float)
                mark_done(
                    path,
                    spec,
                    dataset_a=a,
                    dataset_b=b,
                    check=check,
                    R=at,
                    n_train=len(domain),
                    n_test=len(tdomain),
                    accuracy=float(correct.mean()),
                    accuracy_ci=mean_interval(correct, p.eval.bootstrap, p.eval.confidence),
                )
            rec = read_marker(path)
            rows.append(
                {
                    "dataset_a": a,
                    "dataset_b": b,
                    "check": check,
                    "R": "" if rec["R"] is None else rec["R"],
                    "n_train": rec["n_train"],
                    "n_test": rec["n_test"],
                    "accuracy": rec["accuracy"],
                    "accuracy_ci_low": rec["accuracy_ci"][0],
                    "accuracy_ci_high": rec["accuracy_ci"][1],
                }
            )
    write_csv_unless_same(ctx.results.cues, COLUMNS, rows)
    ctx.echo(f"trivial cues: {len(rows)} rows -> {ctx.results.cues}")
    return rows
