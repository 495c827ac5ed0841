"""Trivial cues that tell the datasets apart: the outer frame of pixels, and the border.

Every asl_alphabet image looked at has a saturated blue frame one pixel wide (about RGB 8, 8,
193); asl-photos has none. A network can read that, and the frozen features separate the
datasets perfectly (study.diagnostics.separability). Two checks per pair of datasets that
share labels, both balanced per label and scored like the separability (chance 0.5):

- **frame**: a logistic regression on the outer one-pixel ring of the stored images alone
  (4 S - 4 pixels of an S x S image, RGB in [0, 1]), trained to tell the two training splits
  apart and scored on their test splits. Near 1: the frame alone gives the dataset away.
- **no border**: the separability of the frozen features of the same images with a border of
  study.core.plan.CUE_TRIM pixels cut away (features units of their own, at the lowest model
  resolution R), beside the whole images' at the same R. Still near 1: the features do not
  need the frame to tell the datasets apart.
- **hand crop** (where the preset has hand crops): the separability of the frozen features of
  the images' hand crops (study.core.hand.crop_boxes), at every model resolution R, beside
  the whole images'. Still near 1: the room around the hand is not all that separates them.

Results: `<out>/cues/<pair>/<check>.json` and `<out>/cues.csv`. Budget: the frame check
decodes the balanced images once (seconds); the border check's features are one forward
pass per training and test image at the lowest R, computed by the features stage.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from study.core import store
from study.core.context import Context
from study.core.files import write_csv_unless_same
from study.core.plan import CUE_TRIM
from study.core.stats import mean_interval
from study.core.units import is_done, mark_done, read_marker
from study.datasets import open_builder
from study.datasets.build import read_index
from study.diagnostics.separability import SEED, balanced

VERSION = 1
COLUMNS = ["dataset_a", "dataset_b", "check", "R", "n_train", "n_test", "accuracy", "accuracy_ci_low", "accuracy_ci_high"]


def ring(images: np.ndarray) -> np.ndarray:
    """The outer one-pixel ring of each N x S x S x 3 image, N x (4 S - 4) * 3, in [0, 1]."""
    top, bottom = images[:, 0], images[:, -1]
    left, right = images[:, 1:-1, 0], images[:, 1:-1, -1]
    return np.concatenate([top, bottom, left, right], axis=1).reshape(len(images), -1).astype(np.float32) / 255


def _frame_sides(ctx: Context, a: str, b: str, split: str, shared: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The rings of a split's stored images of both datasets, balanced per label as the
    separability's, and which dataset each is from (0: a, 1: b)."""
    ya, yb = (read_index(open_builder(ctx, d))[split]["label"] for d in (a, b))
    ia, ib = balanced(ya, yb, shared, SEED)
    rings = []
    for d, idx in ((a, ia), (b, ib)):
        source = open_builder(ctx, d).as_data_source()[split]
        rings.append(np.concatenate([ring(np.stack([r["image"] for r in source.__getitems__(idx[s:s + 256].tolist())]))
                                     for s in range(0, len(idx), 256)]) if len(idx) else np.zeros((0, 1), np.float32))
    return np.concatenate(rings), np.concatenate([np.zeros(len(ia), int), np.ones(len(ib), int)])


def _feature_sides(ctx: Context, a: str, b: str, split: str, R: int, shared: list[int], **unit) -> tuple[np.ndarray, np.ndarray]:
    """Features of a split's images of both datasets (`unit`: trim or hand, study.core.store.load_features),
    balanced per label as the separability's, and which dataset each is from."""
    xa, ya, _ = store.load_features(ctx, a, split, R, R, **unit)
    xb, yb, _ = store.load_features(ctx, b, split, R, R, **unit)
    ia, ib = balanced(ya, yb, shared, SEED)
    return np.concatenate([xa[ia], xb[ib]]), np.concatenate([np.zeros(len(ia), int), np.ones(len(ib), int)])


def run_stage(ctx: Context) -> list[dict]:
    """Both checks for every pair of the plan that is not done, then `cues.csv`."""
    p = ctx.preset
    if p.train.finetune or not ctx.plan.separability_pairs:
        return []
    R = min(p.train_resolutions)
    rows = []
    for a, b, shared in ctx.plan.separability_pairs:
        base = {"kind": "cues", "version": VERSION, "classes": shared, "seed": SEED, "bootstrap": p.eval.bootstrap,
                "confidence": p.eval.confidence}
        checks = {
            "frame": ("frame", base | {"datasets": {d: ctx.dataset_fingerprint(d) for d in (a, b)}, "storage": p.storage_size},
                      lambda split: _frame_sides(ctx, a, b, split, shared), None),
            f"no {CUE_TRIM}-pixel border": (f"no {CUE_TRIM}-pixel border",
                base | {"features": {f"{d}/{s}": store.features_fingerprint(ctx, d, s, R, R, trim=CUE_TRIM)
                                     for d in (a, b) for s in ("train", "test")}},
                lambda split: _feature_sides(ctx, a, b, split, R, shared, trim=CUE_TRIM), R),
        }
        if p.hands.crops:
            for RR in p.train_resolutions:
                checks[f"hand crop R{RR}"] = (
                    "hand crop", base | {"features": {f"{d}/{s}": store.features_fingerprint(ctx, d, s, RR, RR, hand="crop")
                                         for d in (a, b) for s in ("train", "test")}},
                    lambda split, RR=RR: _feature_sides(ctx, a, b, split, RR, shared, hand="crop"), RR)
        for stem, (check, spec, sides, at) in checks.items():
            path = ctx.out_dir / "cues" / f"{a}~{b}" / f"{stem.replace(' ', '_')}.json"
            if not is_done(path, spec, force=ctx.force):
                x, domain = sides("train")
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x, domain)
                tx, tdomain = sides("test")
                correct = (clf.predict(tx) == tdomain).astype(float)
                mark_done(path, spec, dataset_a=a, dataset_b=b, check=check, R=at, n_train=len(domain), n_test=len(tdomain),
                          accuracy=float(correct.mean()), accuracy_ci=mean_interval(correct, p.eval.bootstrap, p.eval.confidence))
            rec = read_marker(path)
            rows.append({"dataset_a": a, "dataset_b": b, "check": check, "R": "" if rec["R"] is None else rec["R"],
                         "n_train": rec["n_train"], "n_test": rec["n_test"], "accuracy": rec["accuracy"],
                         "accuracy_ci_low": rec["accuracy_ci"][0], "accuracy_ci_high": rec["accuracy_ci"][1]})
    write_csv_unless_same(ctx.out_dir / "cues.csv", COLUMNS, rows)
    ctx.echo(f"trivial cues: {len(rows)} rows -> {ctx.out_dir / 'cues.csv'}")
    return rows

