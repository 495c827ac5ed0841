"""Domain separability: can a linear classifier tell two datasets apart from the features?

If the frozen VGG16 features separate the datasets almost perfectly while a letter classifier
trained on one transfers little to the other, the features carry the domain (signer, room,
camera) more than the letter. For every pair of datasets that share labels, at every model
resolution R: a logistic regression (standardised features) is trained to tell the two
datasets' training splits apart and scored on their test splits at every degradation r <= R.
Both sides are balanced per label (the same number of images of each shared label from each
dataset, drawn with a fixed seed), so the classifier cannot lean on which letters a dataset
has; chance is 0.5. Training and test images are the frame-block splits, so no near-duplicate
frame is on both sides. The interval is a percentile bootstrap over test images.

Budget: no forward pass (cached features); one fit per (pair, R) of a few thousand 512-d
rows, well under a second on 2 cores; results under `<out>/separability/` and
`<out>/separability.csv`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from study.core import store
from study.core.context import Context
from study.core.labels import CANONICAL
from study.core.stats import mean_interval
from study.core.units import is_done, mark_done, read_marker

# Bump when the diagnostic changes what it produces.
SEPARABILITY_VERSION = 1
SEED = 0


def balanced(y_a: np.ndarray, y_b: np.ndarray, classes: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into a and b with, for each label, as many images from each side."""
    rng = np.random.default_rng(seed)
    ia, ib = [], []
    for c in classes:
        a, b = np.flatnonzero(y_a == c), np.flatnonzero(y_b == c)
        m = min(len(a), len(b))
        ia.append(rng.choice(a, m, replace=False))
        ib.append(rng.choice(b, m, replace=False))
    return np.sort(np.concatenate(ia)).astype(int), np.sort(np.concatenate(ib)).astype(int)


def unit_path(ctx: Context, a: str, b: str, R: int, r: int) -> Path:
    return ctx.out_dir / "separability" / f"{a}~{b}@{R}" / f"r{r}.json"


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
                path = unit_path(ctx, a, b, R, r)
                fps = {f"{d}/{s}": store.features_fingerprint(ctx, d, s, R, rr)
                       for d in (a, b) for s, rr in (("train", R), ("test", r))}
                spec = {"kind": "separability", "version": SEPARABILITY_VERSION, "features": fps, "classes": shared,
                        "seed": SEED, "bootstrap": p.eval.bootstrap, "confidence": p.eval.confidence}
                if not is_done(path, spec, force=ctx.force):
                    if fit is None:
                        fit = _fit(ctx, a, b, R, shared)
                    x, domain = _sides(ctx, a, b, "test", R, r, shared)
                    correct = (fit[0].predict(x) == domain).astype(float)
                    mark_done(path, spec, dataset_a=a, dataset_b=b, R=R, r=r, labels=[CANONICAL[c] for c in shared],
                              n_train=fit[1], n_test=len(domain), accuracy=float(correct.mean()),
                              accuracy_ci=mean_interval(correct, p.eval.bootstrap, p.eval.confidence))
                rec = read_marker(path)
                rows.append({"dataset_a": a, "dataset_b": b, "R": R, "r": r, "n_train": rec["n_train"], "n_test": rec["n_test"],
                             "accuracy": rec["accuracy"], "accuracy_ci_low": rec["accuracy_ci"][0],
                             "accuracy_ci_high": rec["accuracy_ci"][1]})
    store.write_separability(rows, ctx.out_dir / "separability.csv")
    if rows:
        ctx.echo(f"separability: {len(rows)} rows -> {ctx.out_dir / 'separability.csv'}")
    return rows


def _fit(ctx: Context, a: str, b: str, R: int, shared: list[int]):
    """The domain classifier on the two training splits at R (balanced per label), and its n."""
    x, domain = _sides(ctx, a, b, "train", R, R, shared)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    return clf.fit(x, domain), len(domain)


def _sides(ctx: Context, a: str, b: str, split: str, R: int, r: int, shared: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A split's features of both datasets, balanced per label, and which dataset each row is from (0: a, 1: b)."""
    xa, ya, _ = store.load_features(ctx, a, split, R, r)
    xb, yb, _ = store.load_features(ctx, b, split, R, r)
    ia, ib = balanced(ya, yb, shared, SEED)
    return np.concatenate([xa[ia], xb[ib]]), np.concatenate([np.zeros(len(ia), int), np.ones(len(ib), int)])
