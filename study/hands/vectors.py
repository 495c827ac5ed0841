"""The landmark classifier's input: a features unit of landmark vectors, made from the hands cache.

No image is read and no backbone runs: a split's vectors (study.core.hand.landmark_vectors;
of an augmented view of every hand for `unit.view` > 0) come from the hands stage's cached
landmarks (study.core.store.landmark_table), in record order, with the records' labels and
where a hand was found. The features stage (study.stages.features) computes these units beside
the VGG16 ones; the store says where they live.
"""

from __future__ import annotations

import time

import numpy as np

from study.core import store
from study.core.context import Context
from study.core.errors import StaleResultError
from study.core.plan import Unit
from study.core.units import mark_done, read_marker
from study.datasets import open_builder
from study.datasets.build import read_index


def compute(ctx: Context, unit: Unit, files: store.FeatureFiles, spec: dict) -> dict:
    """Write a split's landmark vectors, labels and hand-found flags into `files`; its marker."""
    t0 = time.perf_counter()
    x, found = store.landmark_table(ctx, unit.dataset, unit.split, unit.view)
    labels = np.asarray(read_index(open_builder(ctx, unit.dataset))[unit.split]["label"], np.int64)
    if len(labels) != len(x):
        raise StaleResultError(
            f"{unit}: {len(x)} landmark rows for {len(labels)} images: the cached landmarks are "
            f"not of this prepared dataset; run `{store.command(ctx, 'hands')} --force`"
        )
    files.root.mkdir(parents=True, exist_ok=True)
    for path, a in ((files.feats, x), (files.labels, labels), (files.found, found)):
        np.save(path, a)
    seconds = time.perf_counter() - t0
    mark_done(
        files.marker,
        spec,
        [files.feats, files.labels, files.found],
        images=len(x),
        found=int(found.sum()),
        seconds=round(seconds, 2),
        images_per_second=round(len(x) / max(seconds, 1e-9), 2),
        devices=0,
        backend="numpy",
    )
    return read_marker(files.marker)
