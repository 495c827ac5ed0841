"""The features pass's input: prepared records to model-ready batches, in worker processes (grain).

A unit's images are cut into batches of the extractor's fixed size in record order: batch b
holds records [b * batch, (b + 1) * batch). Each batch is read, decoded, resized to R and
degraded to r (study.datasets.images.model_pixels) by one call of `LoadBatch`, a picklable
function of b alone. With `workers` > 0, grain's `mp_prefetch` runs those calls in that many
worker processes, worker w taking jobs w, w + workers, ..., and hands them back in order;
with 0 the calls run in this process, one after the other. Either way every batch holds the
same images in the same order, so the features are the same bytes whatever the number of
workers (test).

Starting a set of workers takes 1-2 s and stopping it about 1 s (`bench` reports both), as
long as a GPU needs for tens of thousands of images. So a stage announces every unit it
will compute to one `Feed`, whose workers decode the units one after the other (the next
unit's first batches while the current one's last are in the model) and are started and
stopped once per stage.

Each worker reads with one thread (`ReadOptions(num_threads=1)`): a worker is one core, and
scaling comes from adding workers, which `bench` measures. The study runs on a CPU with 0
workers by default: there the model needs every core and its asynchronous dispatch already
overlaps decoding of the next batch with the current one (`--workers` to change; on a GPU
the decoding would otherwise starve it, so there the default is a worker per core).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
from typing import Any, Callable, Iterator, Sequence

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
    trim: int = 0
    # Hand crops: each record's box (N x 4, normalised; study.core.hand.crop_boxes), or None.
    boxes: np.ndarray | None = dataclasses.field(default=None, compare=False)

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
            "pixels": np.stack(
                [
                    model_pixels(
                        rec["image"],
                        self.R,
                        self.r,
                        self.flip,
                        self.trim,
                        None if self.boxes is None else self.boxes[start + i],
                    )
                    for i, rec in enumerate(records)
                ]
            ),
            "labels": np.asarray([rec["label"] for rec in records], np.int64),
        }


def default_workers() -> int:
    """0 on a CPU (the model needs every core; see above); elsewhere the cores, up to 8."""
    import jax

    return 0 if jax.default_backend() == "cpu" else min(8, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class _Jobs:
    """Job (k, b): batch b of loads[k], tagged with k. What the workers receive, once."""

    loads: tuple[LoadBatch, ...]

    def __call__(self, job: tuple[int, int]) -> dict[str, np.ndarray | int]:
        k, b = job
        return self.loads[k](b) | {"load": k}


@dataclasses.dataclass(frozen=True)
class _Pickled:
    """`fn`'s result pickled to bytes, in the worker; `stream` unpickles it.

    grain copies every numpy array a worker returns into a shared_memory block, which the parent
    unlinks when done with it (from a thread, later). Some never were: Python's resource_tracker
    reported "leaked shared_memory objects" at exit, after Ctrl-C and after some complete runs
    too (4 of 40 blocks in one pass over 10 batches). grain leaves anything but an array as it
    is (bytes included: grain's shared_memory_array.copy_to_shm), so bytes cross through the
    queue's pipe and leave nothing behind, for one more copy of the batch (5 ms to pickle and
    unpickle 64 images of 224 px; no loss seen in the pipeline's images/s)."""

    fn: Callable[[Any], Any]

    def __call__(self, job: Any) -> bytes:
        return pickle.dumps(self.fn(job), protocol=pickle.HIGHEST_PROTOCOL)


def _ignore_interrupts(index: int, count: int) -> None:
    """grain's worker_init_fn: Ctrl-C reaches every process of the terminal's group, and in the
    workers it printed a traceback (one stopped mid-batch) or "Exception ignored" (one landing in
    a garbage-collector callback of JAX's). Ignored there, only the main process stops, and
    closing its iterator stops the workers (`stream`). study.run ignores it earlier, as soon as
    a worker has imported it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stream(loads: Sequence[LoadBatch], workers: int | None = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[dict]:
    """The batches of each load in turn (of each, the batches b with b mod shard[1] ==
    shard[0], a process's share; all of them by default), in order, each tagged "load": k,
    decoded by one set of `workers` processes (0: here; None: `default_workers`). The workers
    are stopped however the iteration ends: exhausted, an error, Ctrl-C or `close()`."""
    index, count = shard
    jobs = [(k, b) for k, load in enumerate(loads) for b in range(index, len(load), count)]
    fn = _Jobs(tuple(loads))
    workers = default_workers() if workers is None else workers
    if workers == 0 or not jobs:
        yield from map(fn, jobs)
        return
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():  # grain reads its settings from absl flags; the study has none
        flags.FLAGS.mark_as_parsed()
    ds = grain.MapDataset.source(jobs).map(_Pickled(fn))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=PREFETCH))
    options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=PREFETCH)
    it = iter(ds.mp_prefetch(options, worker_init_fn=_ignore_interrupts))
    try:
        yield from map(pickle.loads, it)
    finally:
        it.close()


def batches(load: LoadBatch, workers: int | None = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[dict]:
    """The batches of one load (see `stream`)."""
    return stream([load], workers, shard)


class Feed:
    """A stage's input: the batches of the loads announced at its start (the features units it
    will compute), decoded in that order by one set of workers, started on first use and
    stopped on `close`. `batches(load)` gives a load's batches: from the shared workers if it
    was announced (the batches of announced loads that were skipped, say units another run
    finished meanwhile, are dropped), from a set of its own otherwise. `close` (or leaving
    `with Feed(...)`, however) stops every set of workers it started."""

    def __init__(self, loads: Sequence[LoadBatch], workers: int | None = 0, shard: tuple[int, int] = (0, 1)):
        self.loads, self.workers, self.shard = list(loads), workers, shard
        self._it: Iterator[dict] | None = None
        self._own: list[Iterator[dict]] = []  # the pipelines of loads not announced
        self._next = 0  # loads before this one are done with

    def batches(self, load: LoadBatch) -> Iterator[dict]:
        """Batches of `load`: from the shared feed if it is the next load in order, else from a fresh pipeline."""
        k = next((i for i, x in enumerate(self.loads) if x is load), None)
        if k is None or k < self._next:
            self._own.append(batches(load, self.workers, self.shard))
            return self._own[-1]
        self._next = k + 1
        return self._take(k)

    def _take(self, k: int) -> Iterator[dict]:
        if self._it is None:
            self._it = stream(self.loads, self.workers, self.shard)
        index, count = self.shard
        left = len(range(index, len(self.loads[k]), count))
        while left:
            batch = next(self._it)
            if batch["load"] > k:
                raise RuntimeError(f"the feed passed load {k} with {left} of its batches missing")
            if batch["load"] == k:
                left -= 1
                yield batch

    def close(self) -> None:
        """Close the shared batch iterator and those of loads not announced (their workers stop)."""
        for it in filter(None, [self._it, *self._own]):
            it.close()
        self._it, self._own = None, []

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
