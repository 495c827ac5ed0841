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
scored from them (`compute_from_maps`) without a second pass through blocks 1-4. Augmented
views (study.augment) are units of their own, one forward pass each. Where units live and
what identifies them is study.store's; a unit is computed under a lock of its own, so that
two runs sharing a cache never write the same unit at once.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from study import distributed, pipeline, store
from study import weights as weights_lib
from study.context import Context
from study.datasets.images import to_unit
from study.files import held, write_json_atomic
from study.model import BLOCK5, Block5, FrozenVGG16, VGG16Backbone, predict_logits
from study.names import FT5, parse, remedies
from study.store import Unit
from study.units import is_done, mark_done, read_marker


class Extractor:
    """Pooled VGG16 features of fixed-size batches, sharded over every local device.

    Per input resolution, a `FrozenVGG16` (kernels transformed once for their convolution
    paths, study.conv) compiled once. `direct=True` keeps XLA's convolution on every layer
    (the matrix product on tiny maps): the path before Winograd, for comparisons (`bench`)."""

    def __init__(self, weights: weights_lib.Weights, batch: int, width: float = 1.0, maps: bool = False,
                 direct: bool = False):
        if width == 1.0:
            backbone = weights_lib.apply(nnx.eval_shape(lambda: VGG16Backbone(rngs=nnx.Rngs(0))), weights)
        else:  # the tiny VGG of the tests: random weights, nothing to load
            backbone = VGG16Backbone(width=width, rngs=nnx.Rngs(0))
        self.backbone = backbone
        self.features_dim = backbone.features_dim
        devices = jax.local_devices()  # in a group of processes, each computes its own batches
        self.devices = len(devices)
        self.batch = math.ceil(batch / len(devices)) * len(devices)
        # Auto: the compiler propagates the batch sharding through the reshapes of study.conv
        mesh = jax.make_mesh((len(devices),), ("data",), devices=devices, axis_types=(AxisType.Auto,))
        self._data = NamedSharding(mesh, P("data"))
        self._replicated = NamedSharding(mesh, P())
        self.maps = maps  # also return the block-4 maps the features were computed from
        self.direct = direct
        self._frozen: dict[int, tuple] = {}

    def maps_shape(self, resolution: int) -> tuple[int, int, int]:
        """Block-4 maps of one image: four 2x2 poolings, the channels block 5 takes."""
        return (resolution // 16, resolution // 16, self.backbone.convs[BLOCK5[0]].in_features)

    def paths(self, resolution: int) -> tuple[str, ...]:
        """Each convolution's path (study.conv) at this input resolution."""
        return self.backbone.paths(resolution, winograd=not self.direct)

    def _compiled(self, resolution: int):
        if resolution not in self._frozen:
            frozen = FrozenVGG16(self.backbone, resolution, paths=self.paths(resolution))
            graphdef, state = nnx.split(frozen)
            state = jax.device_put(state, self._replicated)
            fn = (lambda s, x: nnx.merge(graphdef, s).features_and_maps(x)) if self.maps else (lambda s, x: nnx.merge(graphdef, s)(x))
            self._frozen[resolution] = jax.jit(fn, in_shardings=(self._replicated, self._data), out_shardings=self._data), state
        return self._frozen[resolution]

    def submit(self, x_BxRxRx3: np.ndarray) -> tuple[jax.Array, int]:
        """Start a batch (padded to the fixed size); returns the future (features, or features
        and maps) and the real count."""
        n = len(x_BxRxRx3)
        if n < self.batch:
            x_BxRxRx3 = np.concatenate([x_BxRxRx3, np.zeros((self.batch - n,) + x_BxRxRx3.shape[1:], np.float32)])
        fn, state = self._compiled(x_BxRxRx3.shape[1])
        return fn(state, jax.device_put(x_BxRxRx3, self._data)), n

    def __call__(self, x_BxRxRx3: np.ndarray) -> np.ndarray:
        out, n = self.submit(x_BxRxRx3)
        return np.asarray(out[0] if self.maps else out)[:n]


def compute(ctx: Context, extractor: Extractor, load: pipeline.LoadBatch, out: Path, spec: dict, desc: str,
            view=None, feed: pipeline.Feed | None = None) -> dict:
    """Features of every record of `load` into `out/feats.npy` (+ labels, + block-4 maps when
    the extractor returns them), then the marker. `view(images, indices)`: an augmentation.

    Batches come from study.pipeline: the stage's `feed`, or workers of their own (decoded in
    `ctx.workers` processes). Started as several processes (study.distributed), each computes
    the batches b with b mod processes equal to its index into files of its own (no two hosts
    ever write one file), which process 0 puts together in batch order, names and marks: the
    same bytes as one process writes alone."""
    n = load.n
    proc, procs = distributed.index(), distributed.count()
    R = load.R
    if (load.batch, load.R, load.r, load.flip) != (extractor.batch, spec["R"], spec["r"], spec["flip"]):
        raise ValueError(f"{desc}: the batches (size {load.batch}, R={load.R}, r={load.r}, flip={load.flip}) are not "
                         f"the unit's (size {extractor.batch}, R={spec['R']}, r={spec['r']}, flip={spec['flip']})")
    stream = feed.batches(load) if feed is not None else pipeline.batches(load, ctx.workers, shard=(proc, procs))
    rows = {"feats.npy": ((extractor.features_dim,), np.float32), "labels.npy": ((), np.int64)}
    if extractor.maps:
        rows["maps.npy"] = (extractor.maps_shape(R), np.float32)
    mine = sum(load.size(b) for b in range(proc, len(load), procs))  # images of this process's batches
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f: _new_array(_shard(out, f, proc), (mine,) + shape, dtype) for f, (shape, dtype) in rows.items()}
    t0 = time.perf_counter()
    pending = None

    def write(at, fut, m):
        outs = fut if extractor.maps else (fut,)
        for f, o in zip(["feats.npy", "maps.npy"], outs):
            arrays[f][at : at + m] = np.asarray(o)[:m]
        bar.update(m)

    with tqdm(total=mine, desc=desc, unit="img", leave=False, disable=None) as bar:
        for batch in stream:
            s, x = batch["start"], to_unit(batch["pixels"])
            at = s // extractor.batch // procs * extractor.batch  # every earlier batch of mine is full
            if view is not None:
                x = view(x, np.arange(s, s + len(x)))
            arrays["labels.npy"][at : at + len(x)] = batch["labels"]
            job = (at, *extractor.submit(x))  # runs while the next batch is decoded
            if pending is not None:
                write(*pending)
            pending = job
        if pending is not None:
            write(*pending)
    seconds = time.perf_counter() - t0
    for a in arrays.values():
        if isinstance(a, np.memmap):
            a.flush()
    del arrays
    distributed.barrier(f"computed {out}")
    if proc == 0:
        for f, (shape, dtype) in rows.items():
            _gather(out, f, load, procs, (n,) + shape, dtype)
        rate = n / seconds if seconds > 0 else float("nan")
        mark_done(out / "unit.json", spec, [out / f for f in ["feats.npy", "maps.npy"] if f in rows] + [out / "labels.npy"],
                  images=n, seconds=round(seconds, 2), images_per_second=round(rate, 2), devices=extractor.devices,
                  processes=procs, backend=jax.default_backend(), conv_paths=list(extractor.paths(R)))
    distributed.barrier(f"marked {out}")
    return read_marker(out / "unit.json")


def _shard(out: Path, name: str, proc: int) -> Path:
    return out / f"{name}.partial{proc}"


def _new_array(path: Path, shape: tuple, dtype):
    """A memory-mapped .npy of `shape` to fill (an empty one is written at once: mmap cannot
    map 0 bytes)."""
    if math.prod(shape) == 0:
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(shape, dtype))
        return np.zeros(shape, dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _gather(out: Path, name: str, load, procs: int, shape: tuple, dtype) -> None:
    """Process 0: the processes' shards of `name`, batch b from process b mod procs, as one file."""
    if procs == 1:
        _shard(out, name, 0).rename(out / name)
        return
    whole = _new_array(out / (name + ".partial"), shape, dtype)
    for p in range(procs):
        part = np.load(_shard(out, name, p), mmap_mode="r")
        at = 0
        for b in range(p, len(load), procs):
            m = load.size(b)
            whole[b * load.batch : b * load.batch + m] = part[at : at + m]
            at += m
        del part
        _shard(out, name, p).unlink()
    if isinstance(whole, np.memmap):
        whole.flush()
    del whole
    (out / (name + ".partial")).rename(out / name)


def compute_from_maps(ctx: Context, unit: Unit, out: Path, spec: dict) -> dict:
    """A fine-tuned block 5's features of a unit, from the prepared backbone's cached block-4
    maps of the same images: block 5 only, about 9% of a forward pass."""
    train_ds, R, seed, _ = unit.model
    maps, labels = store.load_maps(ctx, unit.dataset, unit.split, unit.R, unit.r)
    block5 = Block5(rngs=nnx.Rngs(0)).load(store.block5_arrays(ctx, train_ds, R, seed))
    t0 = time.perf_counter()
    feats = predict_logits(block5, maps, block5.features_dim)  # block 5's pooled output, fixed batches
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "labels.npy", labels)
    np.save(out / "feats.npy", np.asarray(feats, np.float32))
    n = len(labels)
    mark_done(out / "unit.json", spec, [out / "feats.npy", out / "labels.npy"], images=n, seconds=round(seconds, 2),
              images_per_second=round(n / seconds, 2) if seconds > 0 else float("nan"), devices=jax.device_count(),
              backend=jax.default_backend(), from_maps=True)
    return read_marker(out / "unit.json")


_extractors: dict[tuple[str, int, bool], Extractor] = {}


def _extractor(ctx: Context, w: weights_lib.Weights | None, maps: bool = False) -> Extractor:
    """One extractor per (backbone, batch size, maps) in this process (the prepared weights
    when `w` is None): each compiles once per resolution."""
    key = (w.sha256() if w is not None else ctx.weights_record["converted_sha256"], ctx.preset.feature_batch, maps)
    if key not in _extractors:
        _extractors[key] = Extractor(w if w is not None else ctx.load_weights(), ctx.preset.feature_batch, maps=maps)
    return _extractors[key]


def units(ctx: Context) -> list[Unit]:
    """Every unit the preset needs, training resolutions first: each dataset's training and
    validation splits at R (with the flipped and augmented views of the training split where
    the preset asks for them), and its test splits at every r <= R."""
    out = []
    p = ctx.preset
    if p.train.finetune:  # fine-tuned backbones: their features are computed when scoring
        return out
    labels = store.trainable_labels(ctx)
    for R in p.train_resolutions:
        views = max((parse(f"{d}/{x}").views for d in labels for x in remedies(p, R)), default=0)
        for name in ctx.dataset_names:
            splits = ctx.splits(name)
            for split in ("train", "validation"):
                if split in splits:
                    out.append(Unit(name, split, R, R))
                    if split == "train" and p.train.flip:
                        out.append(Unit(name, split, R, R, flip=True))
                    if split == "train" and name in labels:
                        out += [Unit(name, split, R, R, view=v) for v in range(1, views + 1)]
            for split in p.eval.splits:
                if split in splits:
                    out += [Unit(name, split, R, r) for r in p.eval_resolutions_for(R)]
    return out


def finetuned_units(ctx: Context, eval_datasets: list[str] | None = None) -> list[Unit]:
    """The units every evaluation of a fine-tuned model needs (image-level mode or
    `<dataset>/ft5`): fine-tuned models are scored from features of their own backbone."""
    out = []
    for train_ds, R, seed in store.models(ctx) if eval_datasets is None else store.scorable(ctx):
        if not ctx.preset.train.finetune and parse(train_ds).remedy != FT5:
            continue
        sha = store.model_record(ctx, train_ds, R, seed)["backbone_sha256"]
        for eval_ds in eval_datasets or ctx.dataset_names:
            for split in ctx.preset.eval.splits:
                if split in ctx.splits(eval_ds):
                    out += [Unit(eval_ds, split, R, r, model=(train_ds, R, seed, sha)) for r in ctx.preset.eval_resolutions_for(R)]
    return out


def _finetuned_weights(ctx: Context, train_ds: str, R: int, seed: int) -> weights_lib.Weights:
    """The prepared ImageNet weights with block 5 replaced by a fine-tuned model's."""
    return weights_lib.with_layers(ctx.load_weights(), store.block5_arrays(ctx, train_ds, R, seed),
                                   f"block 5 fine-tuned ({train_ds}@{R} seed {seed})")


def run_stage(ctx: Context, todo: list[Unit] | None = None, summary_path: Path | None = None) -> dict:
    """Compute every missing features unit (default: the preset's); write `features.json`.

    In a group of processes (study.distributed) every process walks the same units: process
    0 holds each unit's lock and decides, the others follow at barriers."""
    todo = units(ctx) if todo is None else todo
    lead = distributed.index() == 0
    where = {u: (store.features_dir(ctx, u.dataset, u.split, u.R, u.r, u.flip, u.backbone, u.view),
                 store.features_spec(ctx, u.dataset, u.split, u.R, u.r, u.flip, u.backbone, u.view)) for u in todo}
    # The units to compute from images, announced to one feed: its workers start once per stage.
    loads = {u: _load(ctx, u) for u, (d, spec) in where.items()
             if not _from_maps(u) and not is_done(d / "unit.json", spec, force=ctx.force)}
    shard = (distributed.index(), distributed.count())
    records = []
    with pipeline.Feed(list(loads.values()), ctx.workers, shard) as feed:
        for u in todo:
            d, spec = where[u]
            if not is_done(d / "unit.json", spec, force=ctx.force):
                lock = held(d.with_name(d.name + ".lock"), f"features of {u}", ctx.echo) if lead else contextlib.nullcontext()
                with lock:
                    distributed.barrier(f"lock {d}")
                    todo_here = not is_done(d / "unit.json", spec, force=ctx.force)  # another run may have made it
                    distributed.barrier(f"checked {d}")
                    if todo_here and lead and d.exists():
                        shutil.rmtree(d)
                    distributed.barrier(f"cleared {d}")  # before any process writes its share there
                    if todo_here:
                        rec = _compute(ctx, u, d, spec, loads.get(u), feed)
                        ctx.echo(f"features {u}: {rec['images']} images, {rec['images_per_second']:.1f} img/s")
            rec = read_marker(d / "unit.json")
            records.append({"dataset": u.dataset, "split": u.split, "R": u.R, "r": u.r, "flip": u.flip,
                            "images": rec["images"], "seconds": rec["seconds"],
                            "images_per_second": rec["images_per_second"], "backend": rec["backend"],
                            "devices": rec["devices"]} | ({"view": u.view} if u.view else {})
                           | ({"backbone": u.backbone, "from_maps": bool(rec.get("from_maps"))} if u.model else {}))
    summary = {"units": records, "throughput_by_R": _throughput([x for x in records if not x.get("from_maps")])}
    if lead:
        write_json_atomic(summary_path or ctx.out_dir / "features.json", summary)
    return summary


def _from_maps(u: Unit) -> bool:
    """Whether a unit is computed from cached block-4 maps (a `<dataset>/ft5` model's), not images."""
    return bool(u.model) and parse(u.model[0]).remedy == FT5


def _load(ctx: Context, u: Unit) -> pipeline.LoadBatch:
    """The unit's images as the features pass's batches."""
    source = ctx.builder(u.dataset).as_data_source()[u.split]
    return pipeline.LoadBatch(source, len(source), ctx.preset.feature_batch, u.R, u.r, u.flip)


def _compute(ctx: Context, u: Unit, d: Path, spec: dict, load: pipeline.LoadBatch | None,
             feed: pipeline.Feed) -> dict:
    if _from_maps(u):  # block 5 only, seconds: process 0 alone
        if distributed.index() == 0:
            compute_from_maps(ctx, u, d, spec)
        distributed.barrier(f"from maps {d}")
        return read_marker(d / "unit.json")
    w = _finetuned_weights(ctx, *u.model[:3]) if u.model else None
    view = None
    if u.view:
        from study import augment

        view = lambda x, idx: augment.view(x, idx, u.view, ctx.preset.augment, store.AUGMENT_SEED)
    maps = store.holds_maps(ctx, u.R, u.flip, u.view, u.backbone)
    load = _load(ctx, u) if load is None else load
    return compute(ctx, _extractor(ctx, w, maps), load, d, spec, str(u), view, feed)


def _throughput(records: list[dict]) -> dict[str, float]:
    out = {}
    for R in sorted({x["R"] for x in records}):
        rs = [x for x in records if x["R"] == R and x["seconds"] > 0]
        if rs:
            out[str(R)] = round(sum(x["images"] for x in rs) / sum(x["seconds"] for x in rs), 2)
    return out
