"""Frozen VGG16 features of a unit's images: one compiled, sharded forward pass per batch.

`Extractor` holds VGG16 compiled once per input resolution (kernels transformed once for
their convolution paths, study.network.conv), batches of one fixed shape sharded over every
local device. `compute` runs a unit's batches through it, streaming features (and, where
asked, block-4 maps) to memory-mapped files, and marks the unit done; started as several
processes (study.extraction.distributed) each computes its share of the batches and process
0 puts them together. `compute_from_maps` runs a fine-tuned block 5 on cached block-4 maps.
The features stage (study.stages.features) decides which units to compute; `bench` times
these same functions.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from study.core import store
from study.core.context import Context
from study.core.store import Unit
from study.core.units import mark_done, read_marker
from study.datasets import pipeline
from study.datasets.images import to_unit
from study.extraction import distributed
from study.network import weights as weights_lib
from study.network.model import BLOCK5, Block5, FrozenVGG16, VGG16Backbone, predict_logits


class Extractor:
    """Pooled VGG16 features of fixed-size batches, sharded over every local device.

    Per input resolution, a `FrozenVGG16` (kernels transformed once for their convolution
    paths, study.network.conv) compiled once. `direct=True` keeps XLA's convolution on every layer
    (the matrix product on tiny maps): the path before Winograd, for comparisons (`bench`)."""

    def __init__(
        self, weights: weights_lib.Weights, batch: int, width: float = 1.0, maps: bool = False, direct: bool = False
    ):
        if width == 1.0:
            backbone = weights_lib.imagenet_backbone(weights)
        else:  # the tiny VGG of the tests: random weights, nothing to load
            backbone = VGG16Backbone(width=width, rngs=nnx.Rngs(0))
        self.backbone = backbone
        self.features_dim = backbone.features_dim
        devices = jax.local_devices()  # in a group of processes, each computes its own batches
        self.devices = len(devices)
        self.batch = math.ceil(batch / len(devices)) * len(devices)
        # Auto: the compiler propagates the batch sharding through the reshapes of study.network.conv
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
        """Each convolution's path (study.network.conv) at this input resolution."""
        return self.backbone.paths(resolution, winograd=not self.direct)

    def _compiled(self, resolution: int):
        if resolution not in self._frozen:
            frozen = FrozenVGG16(self.backbone, resolution, paths=self.paths(resolution))
            graphdef, state = nnx.split(frozen)
            state = jax.device_put(state, self._replicated)
            fn = (
                (lambda s, x: nnx.merge(graphdef, s).features_and_maps(x))
                if self.maps
                else (lambda s, x: nnx.merge(graphdef, s)(x))
            )
            self._frozen[resolution] = (
                jax.jit(fn, in_shardings=(self._replicated, self._data), out_shardings=self._data),
                state,
            )
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


def compute(
    ctx: Context,
    extractor: Extractor,
    load: pipeline.LoadBatch,
    files: store.FeatureFiles,
    spec: dict,
    desc: str,
    view=None,
    feed: pipeline.Feed | None = None,
) -> dict:
    """Features of every record of `load` into the unit's `files` (features, labels, and block-4
    maps when the extractor returns them), then the marker. `view(images, indices)`: an augmentation.

    Batches come from study.datasets.pipeline: the stage's `feed`, or workers of their own (decoded in
    `ctx.workers` processes). Started as several processes (study.extraction.distributed), each computes
    the batches b with b mod processes equal to its index into files of its own (no two hosts
    ever write one file), which process 0 puts together in batch order, names and marks: the
    same bytes as one process writes alone."""
    n = load.n
    proc, procs = distributed.index(), distributed.count()
    R = load.R
    if load.batch != extractor.batch:  # the batches are the unit's (the features stage makes them from its Unit)
        raise ValueError(f"{desc}: batches of {load.batch} images for an extractor compiled for {extractor.batch}")
    stream = feed.batches(load) if feed is not None else pipeline.batches(load, ctx.workers, shard=(proc, procs))
    out = files.root
    rows = {files.feats: ((extractor.features_dim,), np.float32), files.labels: ((), np.int64)}
    if extractor.maps:
        rows[files.maps] = (extractor.maps_shape(R), np.float32)
    mine = sum(load.size(b) for b in range(proc, len(load), procs))  # images of this process's batches
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f: _new_array(_shard(f, proc), (mine,) + shape, dtype) for f, (shape, dtype) in rows.items()}
    t0 = time.perf_counter()
    pending = None

    def write(at, fut, m):
        outs = fut if extractor.maps else (fut,)
        for f, o in zip([files.feats, files.maps], outs):
            arrays[f][at : at + m] = np.asarray(o)[:m]
        bar.update(m)

    with tqdm(total=mine, desc=desc, unit="img", leave=False, disable=None) as bar:
        for batch in stream:
            s, x = batch["start"], to_unit(batch["pixels"])
            at = s // extractor.batch // procs * extractor.batch  # every earlier batch of mine is full
            if view is not None:
                x = view(x, np.arange(s, s + len(x)))
            arrays[files.labels][at : at + len(x)] = batch["labels"]
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
    arrays.clear()  # the memory maps closed before process 0 gathers the files
    distributed.barrier(f"computed {out}")
    if proc == 0:
        for f, (shape, dtype) in rows.items():
            _gather(f, load, procs, (n,) + shape, dtype)
        rate = n / seconds if seconds > 0 else float("nan")
        mark_done(
            files.marker,
            spec,
            [f for f in [files.feats, files.maps] if f in rows] + [files.labels],
            images=n,
            seconds=round(seconds, 2),
            images_per_second=round(rate, 2),
            devices=extractor.devices,
            processes=procs,
            backend=jax.default_backend(),
            conv_paths=list(extractor.paths(R)),
        )
    distributed.barrier(f"marked {out}")
    return read_marker(files.marker)


def _shard(path: Path, proc: int) -> Path:
    """Where process `proc` writes its share of the file `path`."""
    return path.with_name(f"{path.name}.partial{proc}")


def _new_array(path: Path, shape: tuple, dtype):
    """A memory-mapped .npy of `shape` to fill (an empty one is written at once: mmap cannot
    map 0 bytes)."""
    if math.prod(shape) == 0:
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(shape, dtype))
        return np.zeros(shape, dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _gather(path: Path, load, procs: int, shape: tuple, dtype) -> None:
    """Process 0: the processes' shards of `path`, batch b from process b mod procs, as one file."""
    if procs == 1:
        _shard(path, 0).rename(path)
        return
    partial = path.with_name(path.name + ".partial")
    whole = _new_array(partial, shape, dtype)
    for p in range(procs):
        part = np.load(_shard(path, p), mmap_mode="r")
        at = 0
        for b in range(p, len(load), procs):
            m = load.size(b)
            whole[b * load.batch : b * load.batch + m] = part[at : at + m]
            at += m
        del part
        _shard(path, p).unlink()
    if isinstance(whole, np.memmap):
        whole.flush()
    del whole
    partial.rename(path)


def compute_from_maps(ctx: Context, unit: Unit, files: store.FeatureFiles, spec: dict) -> dict:
    """A fine-tuned block 5's features of a unit, from the prepared backbone's cached block-4
    maps of the same images: block 5 only, about 9% of a forward pass."""
    train_ds, R, seed = unit.model
    maps, labels = store.load_maps(ctx, Unit(unit.dataset, unit.split, unit.R, unit.r))
    block5 = Block5(rngs=nnx.Rngs(0)).load(store.block5_arrays(ctx, train_ds, R, seed))
    t0 = time.perf_counter()
    feats = predict_logits(block5, maps, block5.features_dim)  # block 5's pooled output, fixed batches
    seconds = time.perf_counter() - t0
    files.root.mkdir(parents=True, exist_ok=True)
    np.save(files.labels, labels)
    np.save(files.feats, np.asarray(feats, np.float32))
    n = len(labels)
    mark_done(
        files.marker,
        spec,
        [files.feats, files.labels],
        images=n,
        seconds=round(seconds, 2),
        images_per_second=round(n / seconds, 2) if seconds > 0 else float("nan"),
        devices=jax.device_count(),
        backend=jax.default_backend(),
        from_maps=True,
    )
    return read_marker(files.marker)
