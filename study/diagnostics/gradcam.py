"""Grad-CAM on block 5: where in the image each model looks, in-domain and across datasets.

Grad-CAM (Selvaraju et al., 2017): the gradient of the predicted class's logit with respect
to block 5's last convolution output A (after ReLU, before the pooling), averaged over the
map, weights A's channels; the ReLU of the weighted sum, scaled to [0, 1] per image, is the
heat map (R/16 x R/16 cells: 4 x 4 at 64 px, 8 x 8 at 128). Across datasets the prediction
is the arg-max over the labels both share, as in the table.

The sample is fixed and seeded, the same for every model: study.core.plan.GRADCAM_LABELS labels drawn from those all
the preset's datasets share, and for each label GRADCAM_PER_LABEL images of each dataset's
test split, so that in-domain and cross-domain maps of the same letters sit side by side.
Models: every model except the few-shot and adapted ones, the leakage ablation and the
landmark and both-views models (no image, or not only), at its first seed; images at r = R; a
hand-crop model sees the sampled images' crops.

**The share of heat on the hand.** For each image where the hands stage found a hand, the
share of its heat map's total inside the hand's box (study.core.hand.hand_box, in the
stored image's coordinates), each cell's heat spread evenly over the cell, and the box's share
of the image (what a map spread evenly would put there). A hand-crop model sees the hand's box
already (its crop), so its box is the tight square around the landmarks (no margin) inside
the crop. Per model and test set, the mean share with its bootstrap interval over those
images: `<out>/gradcam/hand_share.csv`.

The gradcam stage (study.stages.gradcam) writes `<out>/gradcam/<model folder>/<eval dataset>.json`
(the sample's files, true and predicted letters, the heat maps, the hand boxes and shares)
and `.png` (the images and their maps, one image per letter), `hand_share.csv`, and the paper's
overview, `<out>/gradcam/figures/overview.png` (and .pdf), which the report copies. Budget:
one forward and one block-5 backward pass per image, seconds in all.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from study.core import store
from study.core.context import Context
from study.core.hand import hand_box
from study.core.labels import CANONICAL
from study.core.plan import GRADCAM_PER_LABEL, GRADCAM_SEED
from study.core.plots import save
from study.core.stats import mean_interval
from study.datasets import open_builder
from study.datasets.build import read_index
from study.hands import landmarks
from study.network.model import Block5, VGG16Backbone, head_from_arrays

import matplotlib.pyplot as plt  # noqa: E402  isort:skip  (after study.core.plots: the Agg backend)

VERSION = 2  # 2: GRADCAM_PER_LABEL images per label, the share of heat on the hand
SEED = GRADCAM_SEED
OVERVIEW = 4  # letters per eval set in the paper's overview


def sample(ctx: Context) -> tuple[list[int], dict[str, list[int]]]:
    """The sampled labels (canonical indices, study.core.plan) and, per dataset, the
    test-split indices of GRADCAM_PER_LABEL images of each, label by label; seeded, the same
    for every model."""
    labels, rng = ctx.plan.gradcam_labels()
    picks = {}
    for d in ctx.plan.dataset_names:
        if "test" not in ctx.plan.splits(d):
            continue
        y = read_index(open_builder(ctx, d))["test"]["label"]
        picks[d] = [
            int(i)
            for c in labels
            if (y == c).any()
            for i in rng.choice(np.flatnonzero(y == c), size=min(GRADCAM_PER_LABEL, int((y == c).sum())), replace=False)
        ]
    return labels, picks


class Model:
    """A model as Grad-CAM needs it: blocks 1-4, block 5 and the head, jitted."""

    def __init__(self, ctx: Context, base: VGG16Backbone, name: str, R: int, seed: int):
        rec = store.model_record(ctx, name, R, seed)
        block5 = Block5.of(base)
        if rec.get("backbone_sha256"):  # a fine-tuned block 5
            block5.load(store.block5_arrays(ctx, name, R, seed))
        head = head_from_arrays(
            ctx.preset.train.head, store.head_arrays(ctx, name, R, seed), block5.features_dim, len(CANONICAL), seed
        )
        self.fingerprint = rec["fingerprint"]
        self._run = nnx.jit(_cam)
        self._parts = (base, block5, head)

    def __call__(self, images, classes):
        return self._run(*self._parts, jnp.asarray(images), jnp.asarray(classes))


def _cam(base, block5, head, images, classes):
    a = block5.conv_map(base.block4_map(images))

    def logits(a):
        return head(nnx.max_pool(a, (2, 2), strides=(2, 2), padding="VALID").mean(axis=(1, 2)))

    z = logits(a)
    masked = jnp.full_like(z, -jnp.inf).at[:, classes].set(z[:, classes])
    pred = masked.argmax(-1)
    grads = jax.grad(lambda a: jnp.take_along_axis(logits(a), pred[:, None], 1).sum())(a)
    cam = jax.nn.relu((grads.mean(axis=(1, 2), keepdims=True) * a).sum(-1))
    peak = cam.max(axis=(1, 2), keepdims=True)
    return jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1), 0.0), pred


def heat_share(cam: np.ndarray, box: np.ndarray) -> float | None:
    """The share of a heat map's total inside `box` (x0, y0, x1, y1, normalised to the image),
    each cell's heat spread evenly over its part of the image; None for a map without heat."""
    cam = np.asarray(cam, np.float64)
    total = cam.sum()
    if total <= 0:
        return None
    g = np.linspace(0, 1, cam.shape[0] + 1)

    def covered(lo, hi):  # the fraction of each cell's extent inside [lo, hi]
        return np.clip(np.minimum(hi, g[1:]) - np.maximum(lo, g[:-1]), 0, None) * cam.shape[0]

    return float(covered(box[1], box[3]) @ cam @ covered(box[0], box[2]) / total)


def sample_boxes(ctx: Context, d: str, picks: list[int], crop: bool = False) -> tuple[list, list]:
    """Per sampled image: its hand's box (None where no hand was found) and the box's area; for
    a crop model (`crop`), the tight square around the landmarks in the coordinates of the crop."""
    hands = landmarks.read(ctx, d, "test")
    boxes = []
    crops = store.hand_crops(ctx, d, "test") if crop else None
    for i in picks:
        if hands["tried"][i] < 0:
            boxes.append(None)
        elif not crop:
            boxes.append(hand_box(hands["stored"][i], ctx.preset.hands.margin))
        else:
            b, c = hand_box(hands["stored"][i], 0.0), crops[i]
            side = c[2] - c[0]
            boxes.append(np.clip(np.array([b[0] - c[0], b[1] - c[1], b[2] - c[0], b[3] - c[1]]) / side, 0, 1))
    return boxes, [None if b is None else float((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]


SHARE_COLUMNS = [
    "model",
    "R",
    "eval_dataset",
    "domain",
    "images",
    "with_hand",
    "share",
    "share_ci_low",
    "share_ci_high",
    "box_area",
]


def share_rows(records: dict, cfg) -> list[dict]:
    """Per model and test set: the mean share of heat in the hand's box over the sampled images
    with a hand found, its bootstrap interval over them, and the boxes' mean area."""
    out = []
    for (name, R, d), rec in records.items():
        shares = np.array([s for s in rec["hand_shares"] if s is not None], np.float64)
        areas = [a for a, s in zip(rec["hand_areas"], rec["hand_shares"]) if s is not None]
        ci = mean_interval(shares, cfg.bootstrap, cfg.confidence, SEED) if len(shares) else [None, None]

        def r(x):
            return None if x is None else round(float(x), 4)

        out.append(
            {
                "model": name,
                "R": R,
                "eval_dataset": d,
                "domain": "in-domain" if rec["in_domain"] else "cross-domain",
                "images": len(rec["hand_shares"]),
                "with_hand": len(shares),
                "share": r(shares.mean()) if len(shares) else None,
                "share_ci_low": r(ci[0]),
                "share_ci_high": r(ci[1]),
                "box_area": r(np.mean(areas)) if areas else None,
            }
        )
    return out


def overlay(ax, image, cam, title, ok):
    """An image with its heat map over it, titled green when the prediction is right."""
    ax.imshow(image)
    h = image.shape[0]
    ax.imshow(np.asarray(cam), cmap="jet", alpha=0.45, extent=(-0.5, h - 0.5, h - 0.5, -0.5), interpolation="bilinear")
    ax.set_title(title, fontsize=7, color="green" if ok else "crimson")
    ax.axis("off")


def firsts(true: list[str]) -> list[int]:
    """The first sampled image of each letter (what the figures draw)."""
    return [true.index(t) for t in dict.fromkeys(true)]


def figure(x: np.ndarray, info: dict, path: Path) -> None:
    """One model's maps on one test set: the first sampled image of each letter and its map."""
    show = firsts(info["true"])
    n = len(show)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.1), squeeze=False)
    for j, i in enumerate(show):
        t, p = info["true"][i], info["pred"][i]
        axes[0, j].imshow(x[i])
        axes[0, j].axis("off")
        overlay(axes[1, j], x[i], info["cams"][i], f"{t} -> {p}", t == p)
    where = "in-domain" if info["in_domain"] else "cross-domain"
    fig.suptitle(
        f"{info['model']}@{info['R']} seed {info['seed']} on {info['eval_dataset']} test ({where}): true -> predicted",
        fontsize=8,
    )
    fig.tight_layout()
    save(fig, path, dpi=100)
    plt.close(fig)
