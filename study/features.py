"""Frozen-backbone features: computed once per (weights, dataset split, R, r, flip), cached.

The backbone is frozen, so each image needs exactly one VGG16 forward pass per model
resolution R and test-time degradation r; every head is then trained and scored from the
cached 512-d pooled features, in seconds. Images come from the prepared TFDS dataset
(stored at the preset's storage size), are resized to R (area averaging when shrinking) and,
for r < R, area-downsampled to r x r and resized back to R (bilinear): the resolution study's
degradation. Batches have one fixed shape (the last is padded), so each R compiles once, and
are sharded over all local devices along the batch axis (jax.sharding), parameters
replicated. Features stream to a memory-mapped file, so memory stays flat as datasets grow.
Where units live and what identifies them is study.store's; a unit is computed under a lock
of its own, so that two runs sharing a cache never write the same unit at once.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from study import store
from study import weights as weights_lib
from study.context import Context
from study.datasets.images import model_input
from study.files import held, write_json_atomic
from study.model import VGG16Backbone
from study.units import is_done, mark_done, read_marker


class Extractor:
    """Pooled VGG16 features of fixed-size batches, sharded over every local device."""

    def __init__(self, weights: weights_lib.Weights, batch: int, width: float = 1.0):
        if width == 1.0:
            backbone = weights_lib.apply(nnx.eval_shape(lambda: VGG16Backbone(rngs=nnx.Rngs(0))), weights)
        else:  # the tiny VGG of the tests: random weights, nothing to load
            backbone = VGG16Backbone(width=width, rngs=nnx.Rngs(0))
        self.features_dim = backbone.features_dim
        devices = jax.devices()
        self.batch = math.ceil(batch / len(devices)) * len(devices)
        mesh = jax.make_mesh((len(devices),), ("data",), devices=devices)
        self._data = NamedSharding(mesh, P("data"))
        replicated = NamedSharding(mesh, P())
        graphdef, state = nnx.split(backbone)
        self._state = jax.device_put(state, replicated)
        self._fn = jax.jit(
            lambda s, x: nnx.merge(graphdef, s)(x),
            in_shardings=(replicated, self._data),
            out_shardings=self._data,
        )

    def submit(self, x_BxRxRx3: np.ndarray) -> tuple[jax.Array, int]:
        """Start a batch (padded to the fixed size); returns the future and the real count."""
        n = len(x_BxRxRx3)
        if n < self.batch:
            x_BxRxRx3 = np.concatenate([x_BxRxRx3, np.zeros((self.batch - n,) + x_BxRxRx3.shape[1:], np.float32)])
        return self._fn(self._state, jax.device_put(x_BxRxRx3, self._data)), n

    def __call__(self, x_BxRxRx3: np.ndarray) -> np.ndarray:
        out, n = self.submit(x_BxRxRx3)
        return np.asarray(out)[:n]


def compute(ctx: Context, extractor: Extractor, source, out: Path, spec: dict, desc: str) -> dict:
    """Features of every record of `source` into `out/feats.npy` (+ labels), then the marker."""
    n = len(source)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "feats.npy.partial"
    feats = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, extractor.features_dim))
    labels = np.empty(n, np.int64)
    R, r, flip = spec["R"], spec["r"], spec["flip"]
    t0 = time.perf_counter()
    pending = None
    with tqdm(total=n, desc=desc, unit="img", leave=False, disable=None) as bar:
        for start in range(0, n, extractor.batch):
            idx = list(range(start, min(n, start + extractor.batch)))
            records = source.__getitems__(idx)
            x = np.stack([model_input(rec["image"], R, r, flip) for rec in records])
            labels[start : start + len(idx)] = [rec["label"] for rec in records]
            job = (start, *extractor.submit(x))  # runs while the next batch is decoded
            if pending is not None:
                s, fut, m = pending
                feats[s : s + m] = np.asarray(fut)[:m]
                bar.update(m)
            pending = job
        if pending is not None:
            s, fut, m = pending
            feats[s : s + m] = np.asarray(fut)[:m]
            bar.update(m)
    seconds = time.perf_counter() - t0
    feats.flush()
    del feats
    np.save(out / "labels.npy", labels)
    tmp.rename(out / "feats.npy")
    rate = n / seconds if seconds > 0 else float("nan")
    mark_done(out / "unit.json", spec, [out / "feats.npy", out / "labels.npy"], images=n, seconds=round(seconds, 2), images_per_second=round(rate, 2),
              devices=jax.device_count(), backend=jax.default_backend())
    return read_marker(out / "unit.json")


_extractors: dict[tuple[str, int], Extractor] = {}


def _extractor(ctx: Context, w: weights_lib.Weights | None) -> Extractor:
    """One extractor per (backbone, batch size) in this process (the prepared weights when `w`
    is None): each compiles once per resolution."""
    key = (w.sha256() if w is not None else ctx.weights_record["converted_sha256"], ctx.preset.feature_batch)
    if key not in _extractors:
        _extractors[key] = Extractor(w if w is not None else ctx.load_weights(), ctx.preset.feature_batch)
    return _extractors[key]


def units(ctx: Context) -> list[tuple[str, str, int, int, bool]]:
    """Every (dataset, split, R, r, flip) the preset needs, training resolutions first."""
    out = []
    p = ctx.preset
    if p.train.finetune:  # fine-tuned backbones: their features are computed when scoring
        return out
    for R in p.train_resolutions:
        for name in ctx.dataset_names:
            splits = ctx.splits(name)
            for split in ("train", "validation"):
                if split in splits:
                    out.append((name, split, R, R, False))
                    if split == "train" and p.train.flip:
                        out.append((name, split, R, R, True))
            for split in p.eval.splits:
                if split in splits:
                    out += [(name, split, R, r, False) for r in p.eval_resolutions_for(R)]
    return out


def finetuned_units(ctx: Context, eval_datasets: list[str] | None = None) -> list[tuple]:
    """(dataset, split, R, r, False, weights) of every evaluation a fine-tuned model needs:
    fine-tuned models are scored from features of their own backbone."""
    if not ctx.preset.train.finetune:
        return []
    out = []
    for train_ds, R, seed in store.models(ctx):
        sha = store.model_record(ctx, train_ds, R, seed)["backbone_sha256"]
        for eval_ds in eval_datasets or ctx.dataset_names:
            for split in ctx.preset.eval.splits:
                if split in ctx.splits(eval_ds):
                    out += [(eval_ds, split, R, r, False, (train_ds, R, seed, sha)) for r in ctx.preset.eval_resolutions_for(R)]
    return out


def _finetuned_weights(ctx: Context, train_ds: str, R: int, seed: int) -> weights_lib.Weights:
    """The prepared ImageNet weights with block 5 replaced by a fine-tuned model's."""
    return weights_lib.with_layers(ctx.load_weights(), store.block5_arrays(ctx, train_ds, R, seed),
                                   f"block 5 fine-tuned ({train_ds}@{R} seed {seed})")


def run_stage(ctx: Context, todo: list | None = None, summary_path: Path | None = None) -> dict:
    """Compute every missing feature unit (default: the preset's); write `features.json`.

    A unit is (dataset, split, R, r, flip), with a sixth entry (train dataset, R, seed,
    backbone sha256) for a fine-tuned model's backbone (see `finetuned_units`).
    """
    todo = units(ctx) if todo is None else todo
    records = []
    for name, split, R, r, flip, *tuned in todo:
        model = tuned[0] if tuned else None
        sha = model[3] if model else None
        d = store.features_dir(ctx, name, split, R, r, flip, sha)
        spec = store.features_spec(ctx, name, split, R, r, flip, sha)
        if not is_done(d / "unit.json", spec, force=ctx.force):
            with held(d.with_name(d.name + ".lock"), f"features of {name}/{split} R={R} r={r}", ctx.echo):
                if not is_done(d / "unit.json", spec, force=ctx.force):  # another run may have made it
                    if d.exists():
                        shutil.rmtree(d)
                    w = _finetuned_weights(ctx, *model[:3]) if model else None
                    source = ctx.builder(name).as_data_source()[split]
                    rec = compute(ctx, _extractor(ctx, w), source, d, spec, f"{name}/{split} R={R} r={r}")
                    ctx.echo(f"features {name}/{split} R={R} r={r}{' flip' if flip else ''}: {rec['images']} images, "
                             f"{rec['images_per_second']:.1f} img/s")
        rec = read_marker(d / "unit.json")
        records.append({"dataset": name, "split": split, "R": R, "r": r, "flip": flip,
                        "images": rec["images"], "seconds": rec["seconds"],
                        "images_per_second": rec["images_per_second"], "backend": rec["backend"],
                        "devices": rec["devices"]} | ({"backbone": sha} if sha else {}))
    summary = {"units": records, "throughput_by_R": _throughput(records)}
    write_json_atomic(summary_path or ctx.out_dir / "features.json", summary)
    return summary


def _throughput(records: list[dict]) -> dict[str, float]:
    out = {}
    for R in sorted({x["R"] for x in records}):
        rs = [x for x in records if x["R"] == R and x["seconds"] > 0]
        if rs:
            out[str(R)] = round(sum(x["images"] for x in rs) / sum(x["seconds"] for x in rs), 2)
    return out
