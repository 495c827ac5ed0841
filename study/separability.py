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

import csv
import io
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from study import store
from study.context import Context
from study.datasets.labels import CANONICAL, label_index
from study.files import write_text_atomic
from study.names import dataset_pairs
from study.units import is_done, mark_done, read_marker

# Bump when the diagnostic changes what it produces.
SEPARABILITY_VERSION = 1
SEED = 0
COLUMNS = ["dataset_a", "dataset_b", "R", "r", "n_train", "n_test", "accuracy", "accuracy_ci_low", "accuracy_ci_high"]


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


def pairs(ctx: Context) -> list[tuple[str, str, list[int]]]:
    """Every pair of the preset's datasets (train and test splits) with the labels they share."""
    labels = {n: set(ctx.splits(n)["train"]["per_class"]) for n in ctx.dataset_names
              if {"train", "test"} <= set(ctx.splits(n))}
    return [(a, b, sorted(label_index(c) for c in shared)) for a, b, shared in dataset_pairs(labels)]


def unit_path(ctx: Context, a: str, b: str, R: int, r: int) -> Path:
    return ctx.out_dir / "separability" / f"{a}~{b}@{R}" / f"r{r}.json"


def interval(correct: np.ndarray, B: int, confidence: float, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of `correct` over resampled images."""
    idx = np.random.default_rng(seed).integers(0, len(correct), size=(B, len(correct)))
    means = correct[idx].mean(axis=1)
    return [float(np.percentile(means, (1 - confidence) / 2 * 100)), float(np.percentile(means, (1 + confidence) / 2 * 100))]


def run_stage(ctx: Context) -> list[dict]:
    """Every (pair, R, r) that is not done, then `separability.csv` (one row each)."""
    p = ctx.preset
    rows = []
    for a, b, shared in pairs(ctx):
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
                    xa, ya, _ = store.load_features(ctx, a, "test", R, r)
                    xb, yb, _ = store.load_features(ctx, b, "test", R, r)
                    ia, ib = balanced(ya, yb, shared, SEED)
                    x = np.concatenate([xa[ia], xb[ib]])
                    domain = np.concatenate([np.zeros(len(ia), int), np.ones(len(ib), int)])
                    correct = (fit[0].predict(x) == domain).astype(float)
                    mark_done(path, spec, dataset_a=a, dataset_b=b, R=R, r=r, labels=[CANONICAL[c] for c in shared],
                              n_train=fit[1], n_test=len(domain), accuracy=float(correct.mean()),
                              accuracy_ci=interval(correct, p.eval.bootstrap, p.eval.confidence))
                rec = read_marker(path)
                rows.append({"dataset_a": a, "dataset_b": b, "R": R, "r": r, "n_train": rec["n_train"], "n_test": rec["n_test"],
                             "accuracy": rec["accuracy"], "accuracy_ci_low": rec["accuracy_ci"][0],
                             "accuracy_ci_high": rec["accuracy_ci"][1]})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(ctx.out_dir / "separability.csv", buf.getvalue())
    if rows:
        ctx.echo(f"separability: {len(rows)} rows -> {ctx.out_dir / 'separability.csv'}")
    return rows


def _fit(ctx: Context, a: str, b: str, R: int, shared: list[int]):
    """The domain classifier on the two training splits at R (balanced per label), and its n."""
    xa, ya, _ = store.load_features(ctx, a, "train", R, R)
    xb, yb, _ = store.load_features(ctx, b, "train", R, R)
    ia, ib = balanced(ya, yb, shared, SEED)
    x = np.concatenate([xa[ia], xb[ib]])
    domain = np.concatenate([np.zeros(len(ia), int), np.ones(len(ib), int)])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    return clf.fit(x, domain), len(domain)
