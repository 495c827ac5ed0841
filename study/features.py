"""Frozen-backbone features: computed once per (weights, dataset split, R, r, flip), cached.

The backbone is frozen, so each image needs exactly one VGG16 forward pass per model
resolution R and test-time degradation r; every head is then trained and scored from the
cached 512-d pooled features, in seconds. Images come from the prepared TFDS dataset
(stored at the preset's storage size), are resized to R (area averaging when shrinking) and,
for r < R, area-downsampled to r x r and resized back to R (bilinear): the resolution study's
degradation. Batches have one fixed shape (the last is padded), so each R compiles once, and
are sharded over all local devices along the batch axis (jax.sharding), parameters
replicated. Features stream to a memory-mapped file, so memory stays flat as datasets grow.
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
from PIL import Image
from tqdm import tqdm

from study import weights as weights_lib
from study.context import Context
from study.model import VGG16Backbone
from study.units import is_done, mark_done, read_marker

# Bump when the feature computation changes, so cached features are recomputed.
FEATURES_VERSION = 1


def model_input(image_u8: np.ndarray, R: int, r: int, flip: bool = False) -> np.ndarray:
    """A stored image as the model sees it at resolution R after degradation to r: RxRx3 in [0, 1]."""
    im = Image.fromarray(image_u8)
    if im.size != (R, R):
        im = im.resize((R, R), Image.Resampling.BOX if im.size[0] > R else Image.Resampling.BILINEAR)
    if r < R:
        im = im.resize((r, r), Image.Resampling.BOX).resize((R, R), Image.Resampling.BILINEAR)
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(im, dtype=np.float32) / 255.0


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


def unit_dir(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None) -> Path:
    """Cache folder of a unit; `weights` is the backbone's sha256 (default: the prepared one)."""
    sha = (weights or ctx.weights_record["converted_sha256"])[:16]
    return ctx.cache_dir / "features" / sha / ctx.dataset_fingerprint(dataset) / split / f"R{R}_r{r}{'_flip' if flip else ''}"


def unit_spec(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool, weights: str | None = None) -> dict:
    return {
        "kind": "features",
        "version": FEATURES_VERSION,
        "weights": weights or ctx.weights_record["converted_sha256"],
        "dataset": dataset,
        "dataset_fingerprint": ctx.dataset_fingerprint(dataset),
        "split": split,
        "images": ctx.splits(dataset)[split]["images"],
        "R": R,
        "r": r,
        "flip": flip,
    }


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


def fingerprint_of(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None) -> str:
    """The fingerprint of a computed unit; an error if it is missing or stale."""
    d = unit_dir(ctx, dataset, split, R, r, flip, weights)
    if not is_done(d / "unit.json", unit_spec(ctx, dataset, split, R, r, flip, weights), force=False):
        raise FileNotFoundError(f"features of {dataset}/{split} at R={R}, r={r} not computed: run the features stage")
    return read_marker(d / "unit.json")["fingerprint"]


def load(ctx: Context, dataset: str, split: str, R: int, r: int, flip: bool = False, weights: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Cached features and labels of a unit, and its fingerprint; an error if not computed."""
    fp = fingerprint_of(ctx, dataset, split, R, r, flip, weights)
    d = unit_dir(ctx, dataset, split, R, r, flip, weights)
    return np.load(d / "feats.npy"), np.load(d / "labels.npy"), fp


def ensure(ctx: Context, w: weights_lib.Weights, dataset: str, split: str, R: int, r: int) -> None:
    """Compute a unit for backbone weights `w` (a fine-tuned backbone) if it is not cached."""
    sha = w.sha256()
    d = unit_dir(ctx, dataset, split, R, r, False, sha)
    spec = unit_spec(ctx, dataset, split, R, r, False, sha)
    if is_done(d / "unit.json", spec, force=ctx.force):
        return
    if d.exists():
        shutil.rmtree(d)
    extractor = _extractors.get(sha) or _extractors.setdefault(sha, Extractor(w, ctx.preset.feature_batch))
    compute(ctx, extractor, ctx.builder(dataset).as_data_source()[split], d, spec, f"{dataset}/{split} R={R} r={r}")


_extractors: dict[str, Extractor] = {}


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
                    out += [(name, split, R, r, False) for r in eval_resolutions(p, R)]
    return out


def eval_resolutions(preset, R: int) -> list[int]:
    """The degradations r of the preset that a model at R is scored at (r <= R), R first."""
    return [R] + sorted((r for r in preset.eval_resolutions if r < R), reverse=True)


def run_stage(ctx: Context, todo: list | None = None, summary_path: Path | None = None) -> dict:
    """Compute every missing feature unit (default: the preset's); write `features.json`."""
    todo = units(ctx) if todo is None else todo
    extractor = None
    records = []
    for name, split, R, r, flip in todo:
        d = unit_dir(ctx, name, split, R, r, flip)
        spec = unit_spec(ctx, name, split, R, r, flip)
        if not is_done(d / "unit.json", spec, force=ctx.force):
            if d.exists():
                shutil.rmtree(d)
            if extractor is None:
                extractor = Extractor(ctx.load_weights(), ctx.preset.feature_batch)
            source = ctx.builder(name).as_data_source()[split]
            rec = compute(ctx, extractor, source, d, spec, f"{name}/{split} R={R} r={r}")
            ctx.echo(f"features {name}/{split} R={R} r={r}{' flip' if flip else ''}: {rec['images']} images, "
                     f"{rec['images_per_second']:.1f} img/s")
        rec = read_marker(d / "unit.json")
        records.append({"dataset": name, "split": split, "R": R, "r": r, "flip": flip,
                        "images": rec["images"], "seconds": rec["seconds"],
                        "images_per_second": rec["images_per_second"], "backend": rec["backend"],
                        "devices": rec["devices"]})
    from study.files import write_json_atomic

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
