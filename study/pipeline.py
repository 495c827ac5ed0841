"""The features pass's input: prepared records to model-ready batches, in worker processes (grain).

A unit's images are cut into batches of the extractor's fixed size in record order: batch b
holds records [b * batch, (b + 1) * batch). Each batch is read, decoded, resized to R and
degraded to r (study.datasets.images.model_pixels) by one call of `LoadBatch`, a picklable
function of b alone. With `workers` > 0, grain's `mp_prefetch` runs those calls in that many
worker processes, worker w taking batches w, w + workers, ..., and hands them back in order
of b; with 0 the calls run in this process, one after the other. Either way every batch
holds the same images in the same order, so the features are the same bytes whatever the
number of workers (test).

Each worker reads with one thread (`ReadOptions(num_threads=1)`): a worker is one core, and
scaling comes from adding workers, which `bench` measures. The study runs on a CPU with 0
workers by default: there the model needs every core and its asynchronous dispatch already
overlaps decoding of the next batch with the current one (`--workers` to change; on a GPU
the decoding would otherwise starve it, so there the default is a worker per core).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import numpy as np

from study.datasets.images import model_pixels

# Batches each worker keeps ready ahead of the consumer.
PREFETCH = 2


@dataclasses.dataclass(frozen=True)
class LoadBatch:
    """Batch b of a data source as the model sees it: pixels B x R x R x 3 (uint8; `to_unit`
    makes them the model's input, as study.datasets.images.model_input does), labels, and
    the index of its first record. Picklable: what grain sends to its workers. uint8 rather
    than float32 because the batches cross from the workers by pickling: a quarter of the
    bytes (measured at 128 px: 1 worker 578, 2 workers 769 images/s with float32)."""

    source: Any
    n: int
    batch: int
    R: int
    r: int
    flip: bool = False

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def size(self, b: int) -> int:
        """Images in batch b (the last may be short)."""
        return min(self.n, (b + 1) * self.batch) - b * self.batch

    def __call__(self, b: int) -> dict[str, np.ndarray | int]:
        start = b * self.batch
        records = self.source.__getitems__(list(range(start, min(self.n, start + self.batch))))
        return {
            "start": start,
            "pixels": np.stack([model_pixels(rec["image"], self.R, self.r, self.flip) for rec in records]),
            "labels": np.asarray([rec["label"] for rec in records], np.int64),
        }


def default_workers() -> int:
    """0 on a CPU (the model needs every core; see above); elsewhere the cores, up to 8."""
    import jax

    return 0 if jax.default_backend() == "cpu" else min(8, os.cpu_count() or 1)


def batches(load: LoadBatch, workers: int | None = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[dict]:
    """The batches b of `load` with b mod shard[1] == shard[0] (a process's share; all of them
    by default), in order, decoded in `workers` processes (0: here; None: `default_workers`)."""
    index, count = shard
    workers = default_workers() if workers is None else workers
    if workers == 0:
        for b in range(index, len(load), count):
            yield load(b)
        return
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():  # grain reads its settings from absl flags; the study has none
        flags.FLAGS.mark_as_parsed()
    ds = grain.MapDataset.range(index, len(load), count).map(load)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=PREFETCH))
    it = iter(ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=PREFETCH)))
    try:
        yield from it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
