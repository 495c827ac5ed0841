"""`gradcam` (part of `evaluate`): Grad-CAM heat maps of every drawn model on the sampled test images.

The computation (the sample, the maps, the share of heat on the hand, the figures) is
study.diagnostics.gradcam's; this stage decides what is to be done, reads the images and
models through the datasets and the store, and writes each unit, `hand_share.csv` and the
paper's overview (where: study.core.store.Results).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from study.core import store
from study.core.context import Context
from study.core.files import write_csv_unless_same
from study.core.labels import CANONICAL
from study.core.names import parse
from study.core.plan import Unit
from study.core.plots import save_figure
from study.core.units import fingerprint, is_done, mark_done
from study.datasets import open_builder
from study.datasets.images import model_pixels, to_unit
from study.diagnostics.gradcam import (
    OVERVIEW,
    SEED,
    SHARE_COLUMNS,
    VERSION,
    Model,
    figure,
    firsts,
    heat_share,
    overlay,
    sample,
    sample_boxes,
    share_rows,
)
from study.network import weights as weights_lib

import matplotlib.pyplot as plt  # noqa: E402  isort:skip  (after study.core.plots: the Agg backend)


def run_stage(ctx: Context) -> list[Path]:
    """Heat maps and figures of every model on every dataset's test split (see the module doc)."""
    labels, picks = sample(ctx)
    hands = {
        (d, crop): sample_boxes(ctx, d, p, crop)
        for d, p in picks.items()
        for crop in ([False, True] if ctx.preset.hands.crops else [False])
    }
    results = ctx.results
    base = weights_lib.imagenet_backbone(weights_lib.prepared(ctx))
    images: dict = {}

    def imgs(d: str, R: int, crop: bool = False) -> tuple[np.ndarray, list[dict]]:
        if (d, R, crop) not in images:
            recs = open_builder(ctx, d).as_data_source()["test"].__getitems__(picks[d])
            boxes = store.hand_crops(ctx, d, "test")[picks[d]] if crop else [None] * len(recs)
            images[d, R, crop] = (
                np.stack([to_unit(model_pixels(r["image"], R, R, box=b)) for r, b in zip(recs, boxes)]),
                recs,
            )
        return images[d, R, crop]

    written, records = [], {}
    for name, R, seed in ctx.plan.gradcam_models():
        m = None
        crop = parse(name).input == "crop"
        for d in picks:
            out = results.gradcam_unit(name, R, d)
            boxes, areas = hands[d, crop]
            spec = {
                "kind": "gradcam",
                "version": VERSION,
                "model": store.model_record(ctx, name, R, seed)["fingerprint"],
                "features": store.features_fingerprint(ctx, Unit(d, "test", R, R, hand="crop" if crop else "")),
                "picks": picks[d],
                "seed": SEED,
                "hand_boxes": [None if b is None else np.round(b, 6).tolist() for b in boxes],
            }
            if not is_done(out, spec, force=ctx.force):
                m = m or Model(ctx, base, name, R, seed)
                x, recs = imgs(d, R, crop)
                classes = ctx.plan.shared_classes(name, d)
                cam, pred = m(x, classes)
                info = {
                    "model": name,
                    "R": R,
                    "seed": seed,
                    "eval_dataset": d,
                    "in_domain": d in parse(name).sources,
                    "images": [r["file"].decode() if isinstance(r["file"], bytes) else str(r["file"]) for r in recs],
                    "true": [CANONICAL[int(r["label"])] for r in recs],
                    "pred": [CANONICAL[int(p)] for p in np.asarray(pred)],
                    "cams": np.round(np.asarray(cam, np.float64), 4).tolist(),
                    "hand_boxes": spec["hand_boxes"],
                    "hand_areas": areas,
                    "hand_shares": [None if b is None else heat_share(c, b) for c, b in zip(np.asarray(cam), boxes)],
                }
                png = out.with_suffix(".png")
                figure(x, info, png)
                mark_done(out, spec, [png], **info)
                written.append(out)
            records[name, R, d] = json.loads(out.read_text())
    if written:
        ctx.echo(f"grad-cam: {len(written)} heat-map sets written")
    _overview(ctx, records, imgs)
    write_csv_unless_same(results.hand_share, SHARE_COLUMNS, share_rows(records, ctx.preset.eval))
    return written


def _overview(ctx: Context, records: dict, imgs) -> None:
    """The paper's figure: for each single-dataset model at the lowest resolution that has
    remedies (else the lowest), and its remedies (the hand-crop model on its crops),
    OVERVIEW letters in-domain and as many on another dataset."""
    R = min(ctx.preset.augment.resolutions + ctx.preset.block5.resolutions or ctx.preset.train_resolutions)
    kinds = ("single", "augmented", "fine-tuned", "hand crop")
    rows = [
        (n, d)
        for n, RR, _ in ctx.plan.gradcam_models()
        if RR == R and parse(n).kind in kinds
        for d in [parse(n).sources[0]]
    ]
    rows.sort(key=lambda x: (ctx.plan.dataset_names.index(x[1]), x[0] != x[1]))
    pairs = []
    for n, d in rows:
        other = next((o for o in ctx.plan.dataset_names if o != d and (n, R, o) in records), None)
        if other and (n, R, d) in records:
            pairs.append((n, d, other))
    spec = {
        "kind": "gradcam-overview",
        "version": VERSION,
        "inputs": fingerprint([records[n, R, e]["fingerprint"] for n, d, o in pairs for e in (d, o)]),
    }
    marker = ctx.results.gradcam_overview_marker
    if not pairs or is_done(marker, spec, force=ctx.force):
        return
    k = OVERVIEW
    fig, axes = plt.subplots(len(pairs), 2 * k, figsize=(1.25 * 2 * k, 1.45 * len(pairs) + 0.3), squeeze=False)
    for row, (n, d, o) in enumerate(pairs):
        for j, e in enumerate((d, o)):
            rec = records[n, R, e]
            x, _ = imgs(e, R, parse(n).input == "crop")
            for col, i in enumerate(firsts(rec["true"])[:k]):
                ax = axes[row, j * k + col]
                overlay(
                    ax, x[i], rec["cams"][i], f"{rec['true'][i]} -> {rec['pred'][i]}", rec["true"][i] == rec["pred"][i]
                )
            axes[row, j * k].text(
                -0.08,
                0.5,
                f"{n}@{R}\non {e}",
                transform=axes[row, j * k].transAxes,
                fontsize=6,
                ha="right",
                va="center",
                rotation=90,
            )
    fig.suptitle(
        "Grad-CAM on block 5 (first seed): the same letters in-domain (left) and on another dataset (right); "
        "true -> predicted",
        fontsize=8,
    )
    fig.tight_layout()
    files = save_figure(fig, ctx.results.gradcam_figures, "overview")
    mark_done(marker, spec, files, models=[n for n, _, _ in pairs], R=R)
