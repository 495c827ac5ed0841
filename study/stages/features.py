"""Frozen-backbone features: computed once per (weights, dataset split, R, r, flip, view), cached.

The backbone is frozen, so each image needs exactly one VGG16 forward pass per model
resolution R and test-time degradation r; every head is then trained and scored from the
cached 512-d pooled features, in seconds. Images come from the prepared TFDS dataset
(stored at the preset's storage size), are resized to R (area averaging when shrinking) and,
for r < R, area-downsampled to r x r and resized back to R (bilinear): the resolution study's
degradation. Batches have one fixed shape (the last is padded), so each R compiles once, and
are sharded over all local devices along the batch axis (jax.sharding), parameters
replicated. Features stream to a memory-mapped file, so memory stays flat as datasets grow.
At the resolutions where block 5 is fine-tuned, the same pass also keeps each image's
block-4 maps (the input of block 5), so that `<dataset>/ft5` models train on them and are
scored from them (study.extraction.extract.compute_from_maps) without a second pass through blocks 1-4. Augmented
views (study.datasets.augment) are units of their own, one forward pass each. Where units live and
what identifies them is study.core.store's; a unit is computed under a lock of its own, so that
two runs sharing a cache never write the same unit at once.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from study.core import store
from study.core.context import Context
from study.core.errors import StaleResultError
from study.core.files import held, write_json_atomic
from study.core.names import FT5, parse
from study.core.plan import Unit
from study.core.units import is_done, read_marker
from study.datasets import open_builder, pipeline
from study.extraction import distributed
from study.extraction.extract import Extractor, compute, compute_from_maps
from study.hands import vectors
from study.network import weights as weights_lib

_extractors: dict[tuple[str, int, bool], Extractor] = {}


def _extractor(ctx: Context, w: weights_lib.Weights | None, maps: bool = False) -> Extractor:
    """One extractor per (backbone, batch size, maps) in this process (the prepared weights
    when `w` is None): each compiles once per resolution."""
    key = (w.sha256() if w is not None else ctx.weights_record["converted_sha256"], ctx.preset.feature_batch, maps)
    if key not in _extractors:
        _extractors[key] = Extractor(
            w if w is not None else weights_lib.prepared(ctx), ctx.preset.feature_batch, maps=maps
        )
    return _extractors[key]


def run_stage(ctx: Context) -> dict:
    """The `features` command: every frozen-backbone unit of the plan; `features.json`."""
    summary = compute_units(ctx, ctx.plan.feature_units)
    rates = ", ".join(f"{r} px: {v:.1f} img/s" for r, v in summary["throughput_by_R"].items())
    ctx.echo(f"features: {len(summary['units'])} units cached ({rates})")
    return summary


def run_finetuned(ctx: Context) -> dict | None:
    """Before scoring: the features of every fine-tuned model's own backbone on every test
    split (`features_finetuned.json`); nothing when the preset fine-tunes no model."""
    todo = finetuned_units(ctx)
    return compute_units(ctx, todo, ctx.results.features_finetuned) if todo else None


def run_folder(ctx: Context) -> dict:
    """`score`: the features of the folder being scored, frozen and fine-tuned backbones."""
    name = ctx.scoring
    todo = ctx.plan.folder_units(name, ctx.every_r) + finetuned_units(ctx, store.scorable(ctx), [name], ctx.every_r)
    return compute_units(ctx, todo, store.score_files(ctx, name).features)


def finetuned_units(
    ctx: Context,
    models: list[tuple[str, int, int]] | None = None,
    eval_datasets: list[str] | None = None,
    every_r: bool = True,
) -> list[Unit]:
    """The units the evaluations of fine-tuned models need (study.core.plan): features of
    each one's own backbone, named by its sha256 (from the model's record)."""
    out = []
    for e in ctx.plan.finetuned_evaluations(models, eval_datasets, every_r):
        sha = store.model_record(ctx, e.model, e.R, e.seed)["backbone_sha256"]
        out.append(Unit(e.dataset, e.split, e.R, e.r, weights=sha, model=(e.model, e.R, e.seed)))
    return out


def _finetuned_weights(ctx: Context, train_ds: str, R: int, seed: int) -> weights_lib.Weights:
    """The prepared ImageNet weights with block 5 replaced by a fine-tuned model's."""
    return weights_lib.with_layers(
        weights_lib.prepared(ctx),
        store.block5_arrays(ctx, train_ds, R, seed),
        f"block 5 fine-tuned ({train_ds}@{R} seed {seed})",
    )


def compute_units(ctx: Context, todo: list[Unit], summary_path: Path | None = None) -> dict:
    """Compute every unit of `todo` that is not done; write the summary (default `features.json`).

    In a group of processes (study.extraction.distributed) every process walks the same units: process
    0 holds each unit's lock and decides, the others follow at barriers."""
    lead = distributed.index() == 0
    where = {u: (store.feature_files(ctx, u), store.features_spec(ctx, u)) for u in todo}
    # The units to compute from images, announced to one feed: its workers start once per stage.
    loads = {
        u: _load(ctx, u)
        for u, (f, spec) in where.items()
        if not _from_maps(u) and u.hand != "landmarks" and not is_done(f.marker, spec, force=ctx.force)
    }
    shard = (distributed.index(), distributed.count())
    records = []
    with pipeline.Feed(list(loads.values()), ctx.workers, shard) as feed:
        for u in todo:
            files, spec = where[u]
            d = files.root
            if not is_done(files.marker, spec, force=ctx.force):
                lock = held(files.lock, f"features of {u}", ctx.echo) if lead else contextlib.nullcontext()
                with lock:
                    distributed.barrier(f"lock {d}")
                    todo_here = not is_done(files.marker, spec, force=ctx.force)  # another run may have made it
                    distributed.barrier(f"checked {d}")
                    if todo_here and lead and d.exists():
                        shutil.rmtree(d)
                    distributed.barrier(f"cleared {d}")  # before any process writes its share there
                    if todo_here:
                        rec = _compute(ctx, u, files, spec, loads.get(u), feed)
                        ctx.echo(f"features {u}: {rec['images']} images, {rec['images_per_second']:.1f} img/s")
            rec = read_marker(files.marker)
            records.append(
                {
                    "dataset": u.dataset,
                    "split": u.split,
                    "R": u.R,
                    "r": u.r,
                    "flip": u.flip,
                    "images": rec["images"],
                    "seconds": rec["seconds"],
                    "images_per_second": rec["images_per_second"],
                    "backend": rec["backend"],
                    "devices": rec["devices"],
                }
                | ({"view": u.view} if u.view else {})
                | ({"trim": u.trim} if u.trim else {})
                | ({"hand": u.hand} if u.hand else {})
                | ({"backbone": u.weights, "from_maps": bool(rec.get("from_maps"))} if u.model else {})
            )
    summary = {
        "units": records,
        "throughput_by_R": _throughput([x for x in records if not x.get("from_maps") and x.get("hand") != "landmarks"]),
    }
    if lead:
        write_json_atomic(summary_path or ctx.results.features, summary)
    return summary


def _from_maps(u: Unit) -> bool:
    """Whether a unit is computed from cached block-4 maps (a `<dataset>/ft5` model's), not images."""
    return bool(u.model) and parse(u.model[0]).remedy == FT5


def _load(ctx: Context, u: Unit) -> pipeline.LoadBatch:
    """The unit's images as the features pass's batches (cut to their hand crops for a crop unit)."""
    source = open_builder(ctx, u.dataset).as_data_source()[u.split]
    boxes = store.hand_crops(ctx, u.dataset, u.split) if u.hand == "crop" else None
    if boxes is not None and len(boxes) != len(source):
        raise StaleResultError(
            f"{u}: {len(boxes)} hand boxes for {len(source)} images: the cached landmarks are "
            f"not of this prepared dataset; run `{store.command(ctx, 'hands')} --force`"
        )
    return pipeline.LoadBatch(source, len(source), ctx.preset.feature_batch, u.R, u.r, u.flip, u.trim, boxes)


def _compute(
    ctx: Context, u: Unit, files: store.FeatureFiles, spec: dict, load: pipeline.LoadBatch | None, feed: pipeline.Feed
) -> dict:
    if _from_maps(u) or u.hand == "landmarks":  # block 5 only, or no backbone: seconds, process 0 alone
        if distributed.index() == 0:
            (vectors.compute if u.hand == "landmarks" else compute_from_maps)(ctx, u, files, spec)
        distributed.barrier(f"from maps {files.root}")
        return read_marker(files.marker)
    w = _finetuned_weights(ctx, *u.model) if u.model else None
    view = None
    if u.view:
        from study.datasets import augment

        def view(x, idx):
            return augment.view(x, idx, u.view, ctx.preset.augment, store.AUGMENT_SEED)

    maps = ctx.plan.holds_maps(u)
    load = _load(ctx, u) if load is None else load
    return compute(ctx, _extractor(ctx, w, maps), load, files, spec, str(u), view, feed)


def _throughput(records: list[dict]) -> dict[str, float]:
    out = {}
    for R in sorted({x["R"] for x in records}):
        rs = [x for x in records if x["R"] == R and x["seconds"] > 0]
        if rs:
            out[str(R)] = round(sum(x["images"] for x in rs) / sum(x["seconds"] for x in rs), 2)
    return out
