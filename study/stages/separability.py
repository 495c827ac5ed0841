"""`separability` (part of `evaluate`): can a linear classifier tell two datasets apart from the features?

For every pair of the plan's datasets that share labels, at every model resolution R, the
domain classifier (study.diagnostics.separability) is trained on the two training splits'
cached features at R and scored on their test splits at every degradation r <= R; one unit per
(pair, R, r) under `<out>/separability/`, one row each in `separability.csv`.
"""

from __future__ import annotations

import numpy as np

from study.core import store
from study.core.context import Context
from study.core.labels import CANONICAL
from study.core.plan import Unit
from study.core.splits import BALANCE_SEED
from study.core.stats import mean_interval
from study.core.units import is_done, mark_done, read_marker
from study.diagnostics.separability import domain_classifier, sides

# Bump when the diagnostic changes what it produces.
SEPARABILITY_VERSION = 1


def run_stage(ctx: Context) -> list[dict]:
    """Every (pair, R, r) of the plan that is not done, then `separability.csv` (one row
    each); nothing in the image-level mode, which has no frozen features."""
    p = ctx.preset
    if p.train.finetune:
        return []
    rows = []
    for a, b, shared in ctx.plan.separability_pairs:
        for R in p.train_resolutions:
            fit = None
            for r in p.eval_resolutions_for(R):
                path = ctx.results.separability_unit(a, b, R, r)
                fps = {
                    f"{d}/{s}": store.features_fingerprint(ctx, Unit(d, s, R, rr))
                    for d in (a, b)
                    for s, rr in (("train", R), ("test", r))
                }
                spec = {
                    "kind": "separability",
                    "version": SEPARABILITY_VERSION,
                    "features": fps,
                    "classes": shared,
                    "seed": BALANCE_SEED,
                    "bootstrap": p.eval.bootstrap,
                    "confidence": p.eval.confidence,
                }
                if not is_done(path, spec, force=ctx.force):
                    if fit is None:
                        x, domain = _sides(ctx, a, b, "train", R, R, shared)
                        fit = domain_classifier(x, domain), len(domain)
                    x, domain = _sides(ctx, a, b, "test", R, r, shared)
                    correct = (fit[0].predict(x) == domain).astype(float)
                    mark_done(
                        path,
                        spec,
                        dataset_a=a,
                        dataset_b=b,
                        R=R,
                        r=r,
                        labels=[CANONICAL[c] for c in shared],
                        n_train=fit[1],
                        n_test=len(domain),
                        accuracy=float(correct.mean()),
                        accuracy_ci=mean_interval(correct, p.eval.bootstrap, p.eval.confidence),
                    )
                rec = read_marker(path)
                rows.append(
                    {
                        "dataset_a": a,
                        "dataset_b": b,
                        "R": R,
                        "r": r,
                        "n_train": rec["n_train"],
                        "n_test": rec["n_test"],
                        "accuracy": rec["accuracy"],
                        "accuracy_ci_low": rec["accuracy_ci"][0],
                        "accuracy_ci_high": rec["accuracy_ci"][1],
                    }
                )
    store.write_separability(rows, ctx.results.separability)
    if rows:
        ctx.echo(f"separability: {len(rows)} rows -> {ctx.results.separability}")
    return rows


def _sides(
    ctx: Context, a: str, b: str, split: str, R: int, r: int, shared: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """A split's features of both datasets at (R, r), balanced per label, and which dataset each row is from."""
    xa, ya, _ = store.load_features(ctx, Unit(a, split, R, r))
    xb, yb, _ = store.load_features(ctx, Unit(b, split, R, r))
    return sides(xa, ya, xb, yb, shared)
