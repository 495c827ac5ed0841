"""The features stage's machinery on the smoke run's cache: sharded over devices, decoded in
worker processes, one feed per stage, split over processes: always the bytes of one process
on one device."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from smoke import args, context, layout
from study import run
from study.core import store
from study.core.plan import Unit
from study.datasets import open_builder
from study.datasets.images import model_input

pytestmark = pytest.mark.slow  # every test here uses the smoke run


def test_sharded_features_equal_single_device_features(smoke, tmp_path):
    script = (
        "import sys, numpy as np, jax\n"
        "jax.config.update('jax_threefry_partitionable', False)\n"
        "from study.extraction import extract\n"
        "from study.network import weights\n"
        "w = weights.load_converted(sys.argv[1])\n"
        "x = np.load(sys.argv[2])\n"
        "ex = extract.Extractor(w, 16)\n"
        "assert jax.device_count() == int(sys.argv[4]), jax.devices()\n"
        "np.save(sys.argv[3], np.concatenate([ex(x[i:i + 16]) for i in range(0, len(x), 16)]))\n"
    )
    ctx = context(smoke)
    wfile = ctx.weights_dir / ctx.weights_record["converted_file"]
    src = open_builder(ctx, "asl_alphabet").as_data_source()["test"]
    x = np.stack([model_input(src[i]["image"], 32, 32) for i in range(40)])  # 40: a padded last batch
    np.save(tmp_path / "x.npy", x)
    for n in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        subprocess.run(
            [sys.executable, "-c", script, str(wfile), str(tmp_path / "x.npy"), str(tmp_path / f"f{n}.npy"), str(n)],
            cwd=REPO,
            env=env,
            check=True,
        )
    one, two = np.load(tmp_path / "f1.npy"), np.load(tmp_path / "f2.npy")
    assert one.shape == (40, 512)
    # Equal up to float32 summation order (each device convolves 8 images instead of 16):
    # the largest difference relative to the features' scale.
    scale = np.abs(one).max()
    assert np.abs(two - one).max() / scale < 1e-5
    cached = np.load(store.features_dir(ctx, Unit("asl_alphabet", "test", 32, 32)) / "feats.npy")
    labels = np.load(store.features_dir(ctx, Unit("asl_alphabet", "test", 32, 32)) / "labels.npy")
    assert np.abs(cached[:40] - one).max() / scale < 1e-5
    assert list(labels[:40]) == [src[i]["label"] for i in range(40)]


def _same_as_smoke(cache: Path, smoke: Path) -> list[str]:
    """The arrays of `cache` (features of asl_photos, feature maps included), each checked to
    be byte for byte the file at the same place in the smoke run's cache; their names."""
    names = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.npy"))
    assert any(n.endswith("/feats.npy") for n in names) and any(n.endswith("/maps.npy") for n in names), names
    reference = layout(smoke)["cache"]
    for n in names:
        assert (cache / n).read_bytes() == (reference / n).read_bytes(), n
    return names


def _with_hands(cache: Path, smoke: Path) -> None:
    """A new cache with the smoke run's hand landmarks (the hands stage's), which the hand crops
    and landmark vectors are made from."""
    shutil.copytree(layout(smoke)["cache"] / "hands", cache / "hands")


def test_input_workers_give_the_same_feature_bytes(smoke, tmp_path):
    """The features of asl_photos decoded in 1 and in 2 grain worker processes are the bytes
    the smoke run cached with 0 (decoded in the main process)."""
    names = {}
    for workers in (1, 2):
        cache = tmp_path / f"cache{workers}"
        _with_hands(cache, smoke)
        assert (
            run.main(
                args(smoke, "features", "--dataset", "asl_photos", "--workers", str(workers), "--cache-dir", str(cache))
            )
            == 0
        )
        names[workers] = _same_as_smoke(cache, smoke)
    assert names[1] == names[2] and len(names[1]) >= 5


@pytest.mark.parametrize("workers", [0, 2])
def test_one_feed_decodes_a_stages_units_in_one_set_of_workers(smoke, workers):
    """A Feed gives each announced load's batches, as the load makes them, from one set of
    worker processes for all (the same processes from the first load to the last), drops the
    batches of a load that is skipped, and serves a load it was not told of from its own."""
    import multiprocessing

    from study.datasets import pipeline

    ctx = context(smoke)
    source = open_builder(ctx, "asl_photos").as_data_source()["train"]
    loads = [
        pipeline.LoadBatch(source, 40, 16, 32, 32),
        pipeline.LoadBatch(source, 24, 16, 32, 16),
        pipeline.LoadBatch(source, 96, 16, 32, 32, flip=True),
    ]
    other = pipeline.LoadBatch(source, 20, 16, 32, 16, flip=True)

    def check(got, load):
        assert [g["start"] for g in got] == list(range(0, load.n, load.batch))
        for g in got:
            want = load(g["start"] // load.batch)
            assert np.array_equal(g["pixels"], want["pixels"]) and np.array_equal(g["labels"], want["labels"])

    with pipeline.Feed(loads, workers) as feed:
        first = []
        for g in feed.batches(loads[0]):
            first.append(g)
            pids = {p.pid for p in multiprocessing.active_children()}
        check(first, loads[0])
        check(list(feed.batches(other)), other)
        last = []
        for g in feed.batches(loads[2]):  # loads[1] skipped: its batches dropped
            if not last:  # (a worker whose jobs are done exits: ask at the first of 6 batches)
                assert {p.pid for p in multiprocessing.active_children()} == pids and len(pids) == workers
            last.append(g)
        check(last, loads[2])
        check(list(feed.batches(loads[1])), loads[1])  # passed: served apart
    assert not multiprocessing.active_children()


def _features_in_2_processes(
    smoke, cache: Path, tfds_dirs: tuple[Path, Path] | None = None
) -> tuple[list, list, float]:
    """`features --dataset asl_photos` as 2 local processes (jax.distributed), each with its own
    --tfds-dir if given; their exit statuses, outputs and the seconds until both ended."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    procs = []
    for i in range(2):
        extra = ["--tfds-dir", str(tfds_dirs[i])] if tfds_dirs else []
        argv = args(
            smoke,
            "features",
            "--dataset",
            "asl_photos",
            "--cache-dir",
            str(cache),
            "--processes",
            "2",
            "--process-id",
            str(i),
            "--coordinator",
            f"127.0.0.1:{port}",
            *extra,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "study.run", *argv],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600)[0] for p in procs]
    return [p.returncode for p in procs], outs, time.monotonic() - t0


def test_two_processes_write_the_cache_one_process_writes(smoke, tmp_path):
    """`features` started as 2 processes (jax.distributed on 2 local CPU processes, each half of
    every unit's batches) writes the bytes of the single-process smoke run. When one process
    fails (here its copy of the prepared images is damaged), both stop within seconds, the
    other with an error naming it, and nothing is marked done; the same commands run again
    finish every unit."""
    cache = tmp_path / "cache"
    damaged = tmp_path / "tfds"
    shutil.copytree(layout(smoke)["tfds"], damaged, ignore=shutil.ignore_patterns(".locks"))
    records = [p for p in damaged.rglob("*.array_record*") if "asl_photos" in str(p)]
    assert records
    for p in records:
        p.write_bytes(b"\0" * p.stat().st_size)
    _with_hands(cache, smoke)
    codes, outs, seconds = _features_in_2_processes(smoke, cache, (layout(smoke)["tfds"], damaged))
    assert codes[0] != 0 and codes[1] != 0, "\n".join(o[-2000:] for o in outs)
    assert seconds < 30, seconds
    assert "process 1 failed" in outs[0] and "process 0 stops too" in outs[0], outs[0][-2000:]
    assert not [p for p in (cache / "features").rglob("unit.json")]  # no unit marked done
    codes, outs, _ = _features_in_2_processes(smoke, cache)
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outs)
    assert len(_same_as_smoke(cache, smoke)) >= 5
    markers = [json.loads(p.read_text()) for p in (cache / "features").rglob("unit.json")]
    # every unit from images computed by both processes (landmark vectors read no image: process 0 alone)
    assert markers and all(
        m["processes"] == 2 for m in markers if not m.get("from_maps") and m["spec"]["kind"] != "landmarks"
    )
