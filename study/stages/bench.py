"""`python -m study.run bench`: how fast the features are, against what bounds them, in one process.

Machines differ from session to session, so every speed here is taken in the same run as
the ones it is compared with, and reported as a ratio to them:

1. the matrix-multiply rate (XLA, n x n float32): the bound of direct convolution;
2. per model resolution R of the preset:
   - model only (random images already on the device, the preset's batch): the whole
     backbone with every plan of convolution paths (`direct`: XLA's convolution, as before
     Winograd; `f2` / `f4`: that Winograd tile on every layer the rule gives Winograd;
     `chosen`: study.network.conv.choose, what feature extraction runs), in images/s, GFLOP/s
     counted as direct-convolution FLOPs (so a rate above the matrix-multiply rate means
     fewer multiplications, not faster ones) and the share of the matrix-multiply rate;
     the plans are timed in turns, so that the machine's slow spells fall on all alike;
   - each layer alone with each path (GFLOP/s, timed in turns): the evidence for the rule;
   - the input pipeline alone (records read, decoded, resized to R; study.datasets.pipeline) with 0,
     1 and 2 worker processes (and the machine's default), on 8x `--images` images: images/s
     from the first batch to the last, and apart the seconds to start the workers and to
     stop them;
   - the features end to end (pipeline and model, as `features` runs them) on the first
     images of a prepared training split, direct and chosen in turns (the median of 3).

3. training (random inputs of the real shapes, nothing read from disk):
   - heads on features: one head trained by `fit` (a Python step loop, as before) against
     the preset's seeds trained together by `fit_group` (one compiled program per epoch), a
     few epochs over the first dataset's number of training rows at the preset's batch,
     compilation excluded: heads/s, examples/s and the share of the matrix-multiply rate that
     the heads' arithmetic (6 x the weights' size per example, forward and backward) reaches;
   - block 5 fine-tuned on block-4 maps (study.stages.train.train_block5's step: block 5 and the
     head forward and backward, AdamW) at each of the preset's block-5 resolutions, with each
     convolution path and the rule's, at the preset's batch and at 64: training images/s, the
     paths timed in turns.

Written to results/<preset>/bench.json (`--out`) and printed as a table; in the study of
record's own folder to bench.local.json (ignored by git) unless `--record` (Context.bench_path).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from study.core import store
from study.core.context import Context
from study.core.files import write_json_atomic
from study.core.labels import CANONICAL
from study.datasets import open_builder
from study.network import conv
from study.network import weights as weights_lib
from study.network.model import Block5, Classifier, FrozenVGG16, MLPHead
from study.training.fit import Schedule, train_step
from study.training.group import fit_group
from study.training.heads import new_head, train_head

MATMUL_N = 4096
PLANS = ("direct", "f2", "f4", "chosen")
# Each timing: repeated until this many seconds and at least MIN_REPEATS times; the median.
# The timings compared (a resolution's plans, a layer's paths) are taken in turns.
MIN_SECONDS, MIN_REPEATS = 2.0, 3
# The features end to end: each plan's pass over the images this many times, in turns.
ROUNDS = 3
# im2col of a layer larger than this (bytes) is not timed: it would only measure swapping.
MAX_PATCHES_BYTES = 1 << 30


def timed(fn, *args) -> float:
    """Median seconds of `fn(*args)` (compiled and run once first)."""
    return timed_in_turns({"": (fn, *args)})[""]


def timed_in_turns(calls: dict[str, tuple]) -> dict[str, float]:
    """Median seconds of each call (fn, *args), each compiled and run once first, then all run
    in turns (one of each, again and again) until each has run MIN_SECONDS on average and
    MIN_REPEATS times: a slow spell of the machine falls on all of them alike, so that their
    ratios hold (timed one after the other, a plan once came out slower than the features
    end to end that contain it)."""
    for fn, *args in calls.values():
        jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {k: [] for k in calls}
    start = time.perf_counter()
    while min(map(len, times.values())) < MIN_REPEATS or time.perf_counter() - start < MIN_SECONDS * len(calls):
        for k, (fn, *args) in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_gflops(n: int = MATMUL_N) -> float:
    """The GFLOP/s of an n x n float32 matrix multiply on this device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    return 2 * n**3 / timed(jax.jit(jnp.matmul), a, b) / 1e9


def direct_gflop(shapes, batch: int = 1) -> float:
    """Direct convolution's FLOPs (2 x H x W x 9 x C_in x C_out per layer), in GFLOP."""
    return sum(2 * s * s * 9 * ci * co for s, ci, co in shapes) * batch / 1e9


def plan_paths(backbone, resolution: int, plan: str) -> tuple[str, ...]:
    """The conv paths per layer at `resolution` under `plan`: direct, a Winograd variant, or the chosen ones."""
    chosen = backbone.paths(resolution)
    if plan == "direct":
        return backbone.paths(resolution, winograd=False)
    if plan in conv.WINOGRAD:
        return tuple(plan if p in conv.WINOGRAD else p for p in chosen)
    return chosen


def model_only(backbone, resolution: int, batch: int) -> dict[str, dict]:
    """Per plan: seconds per batch of the whole backbone (the plans timed in turns) and its paths."""
    x = jax.random.uniform(jax.random.key(0), (batch, resolution, resolution, 3))
    calls, paths = {}, {}
    for plan in PLANS:
        frozen = FrozenVGG16(backbone, resolution, paths=plan_paths(backbone, resolution, plan))
        graphdef, state = nnx.split(frozen)
        calls[plan] = (jax.jit(lambda s, x, graphdef=graphdef: nnx.merge(graphdef, s)(x)), state, x)
        paths[plan] = list(frozen.paths)
    seconds = timed_in_turns(calls)
    return {plan: {"seconds_per_batch": seconds[plan], "paths": paths[plan]} for plan in PLANS}


def layer_rates(backbone, resolution: int, batch: int) -> list[dict]:
    """Per conv layer at `resolution`, the GFLOP/s of each conv path at batch size `batch`."""
    rows = []
    chosen = backbone.paths(resolution)
    for i, ((side, ci, co), c) in enumerate(zip(backbone.layer_shapes(resolution), backbone.convs)):
        x = jax.random.normal(jax.random.key(i), (batch, side, side, ci))
        gflop = direct_gflop([(side, ci, co)], batch)
        calls = {}
        for path in conv.PATHS:
            if path == "matmul" and batch * side * side * 9 * ci * 4 > MAX_PATCHES_BYTES:
                continue
            fn = jax.jit(lambda x, k, b, path=path: jax.nn.relu(conv.conv3x3(x, k, path) + b))
            calls[path] = (fn, x, conv.prepare(c.kernel[...], path), c.bias[...])
        rates = {path: round(gflop / s, 1) for path, s in timed_in_turns(calls).items()}
        rows.append(
            {
                "layer": i,
                "map": side,
                "c_in": ci,
                "c_out": co,
                "gflop_per_batch": round(gflop, 3),
                "chosen": chosen[i],
                "gflops": rates,
            }
        )
    return rows


def input_only(ctx: Context, resolution: int, images: int, workers: int) -> dict:
    """Batches read from the prepared dataset, decoded and resized to R (study.datasets.pipeline) in
    `workers` processes. The rate is taken from the first batch to the last; the workers'
    start-up (to the first batch) and shut-down (after the last) are reported apart: a stage
    pays them once (study.datasets.pipeline.Feed)."""
    from study.datasets import pipeline

    name, source = _training_source(ctx)
    load = pipeline.LoadBatch(source, min(images, len(source)), ctx.preset.feature_batch, resolution, resolution)
    t = time.perf_counter()
    arrived, count = [], 0
    for batch in pipeline.batches(load, workers):
        arrived.append(time.perf_counter())
        count += len(batch["labels"])
    end = time.perf_counter()
    first, last = arrived[0], arrived[-1]
    rate = (count - load.size(0)) / (last - first) if last > first else float("nan")
    return {
        "dataset": name,
        "workers": workers,
        "images": load.n,
        "start_seconds": round(first - t, 2),
        "stop_seconds": round(end - last, 2),
        "images_per_second": round(rate, 1),
    }


def end_to_end(ctx: Context, resolution: int, images: int, weights) -> dict[str, dict]:
    """The features pass (study.extraction.extract.compute) over the first `images` training images,
    with direct convolution and with the chosen paths in turns, ROUNDS times each (after one
    batch each to compile): per plan the median images/s and every round's."""
    from study.datasets import pipeline
    from study.extraction import extract

    name, source = _training_source(ctx)
    extractors = {
        plan: extract.Extractor(weights, ctx.preset.feature_batch, direct=plan == "direct")
        for plan in ("direct", "chosen")
    }
    spec = {"R": resolution, "r": resolution, "flip": False, "bench": True}

    def load(n):
        return pipeline.LoadBatch(source, min(n, len(source)), ctx.preset.feature_batch, resolution, resolution)

    rates: dict[str, list[float]] = {plan: [] for plan in extractors}
    with tempfile.TemporaryDirectory() as tmp:
        for plan, ex in extractors.items():
            extract.compute(ctx, ex, load(ex.batch), store.FeatureFiles(Path(tmp) / f"warm-{plan}"), spec, "compile")
        for i in range(ROUNDS):
            for plan, ex in extractors.items():
                out = Path(tmp) / f"{plan}-{i}"
                rec = extract.compute(
                    ctx, ex, load(images), store.FeatureFiles(out), spec, f"bench {resolution} px {plan}"
                )
                rates[plan].append(rec["images_per_second"])
                shutil.rmtree(out)
    return {
        plan: {
            "dataset": name,
            "images": rec["images"],
            "images_per_second": round(statistics.median(r), 1),
            "rounds": r,
        }
        for plan, r in rates.items()
    }


# Training heads: epochs timed (each run once before, to compile).
HEAD_EPOCHS = 4
# Block 5 is timed at the preset's batch and at this one (its batch before Winograd training).
BLOCK5_SMALL_BATCH = 64


def head_flops_per_example(head) -> int:
    """Forward and backward FLOPs of a head per example: 2 per weight forward, 4 backward
    (the gradients of the inputs and of the weights)."""
    return sum(6 * int(np.prod(k.shape)) for k in jax.tree.leaves(nnx.state(head, nnx.Param)) if k.ndim == 2)


def heads_training(ctx: Context, rows: int, mm_gflops: float) -> dict:
    """One head by `fit` against the preset's seeds by `fit_group`, HEAD_EPOCHS epochs each
    (no early stopping), on random features; compilation excluded (each timed on its second run)."""
    cfg = dataclasses.replace(ctx.preset.train, epochs=HEAD_EPOCHS, patience=HEAD_EPOCHS)
    seeds = list(ctx.preset.seeds)
    rng = np.random.default_rng(0)
    dim = 512
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    y = rng.integers(0, len(CANONICAL), rows)
    vx, vy = x[: rows // 8], y[: rows // 8]

    def one(tmp: Path) -> None:
        train_head(x, y, vx, vy, cfg, 0, tmp, log=lambda *_: None)

    def group(tmp: Path) -> None:
        heads = [new_head(cfg, dim, s) for s in seeds]
        fit_group(
            heads,
            seeds,
            x[None],
            y,
            [np.arange(rows)] * len(seeds),
            vx,
            vy,
            Schedule.of(cfg),
            store.ModelFiles(tmp).checkpoint,
            log=lambda *_: None,
        )

    seconds = {}
    for name, fn in (("one head (fit)", one), (f"{len(seeds)} heads together (fit_group)", group)):
        times = []
        for _ in range(2):  # the first compiles
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                fn(Path(tmp))
                times.append(time.perf_counter() - t)
        seconds[name] = times[-1]
    flops = head_flops_per_example(new_head(cfg, dim, 0))
    out = {
        "rows": rows,
        "epochs": HEAD_EPOCHS,
        "batch": cfg.batch_size,
        "mflop_per_example": round(flops / 1e6, 3),
        "runs": {},
    }
    for (name, s), heads in zip(seconds.items(), (1, len(seeds))):
        examples = heads * HEAD_EPOCHS * rows / s
        out["runs"][name] = {
            "heads": heads,
            "seconds": round(s, 2),
            "heads_per_second": round(heads / s, 3),
            "examples_per_second": round(examples),
            "gflops": round(examples * flops / 1e9, 1),
            "share_of_matmul": round(examples * flops / 1e9 / mm_gflops, 3),
        }
    return out


def block5_training(ctx: Context, backbone, R: int) -> list[dict]:
    """Training images/s of block 5 and the head on R/16 maps, per path and batch, in turns."""
    side = R // 16
    cfg = ctx.preset.block5
    rows = []
    for batch in sorted({cfg.batch_size, BLOCK5_SMALL_BATCH}, reverse=True):
        x = jax.random.normal(jax.random.key(0), (batch, side, side, 512))
        y = jnp.zeros(batch, jnp.int32)
        calls, paths = {}, {}
        for path in (None,) + conv.PATHS:
            model = Classifier(Block5.of(backbone, path), MLPHead(512, len(CANONICAL), rngs=nnx.Rngs(0)))
            opt = nnx.Optimizer(model, optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay), wrt=nnx.Param)
            name = path or "chosen"
            calls[name] = (train_step(nnx.Param), model, opt, x, y)
            paths[name] = path or conv.choose(side, side, 512, 512)
        rates = {k: round(batch / v, 1) for k, v in timed_in_turns(calls).items()}
        rows.append(
            {
                "R": R,
                "map": side,
                "batch": batch,
                "chosen": paths["chosen"],
                "images_per_second": rates,
                "chosen_over_matmul": round(rates["chosen"] / rates["matmul"], 2),
            }
        )
    return rows


def _first_training_rows(ctx: Context) -> int:
    """The number of training images of the preset's first dataset (bench runs after prepare)."""
    return len(_training_source(ctx)[1])


def _worker_counts() -> list[int]:
    from study.datasets.pipeline import default_workers

    return sorted({0, 1, 2, default_workers()})


def _training_source(ctx: Context):
    name = ctx.plan.dataset_names[0]
    return name, open_builder(ctx, name).as_data_source()["train"]


def run_stage(ctx: Context) -> dict:
    """The `bench` command, on `ctx.bench_images` training images per resolution."""
    return run(ctx, ctx.bench_images)


def run(ctx: Context, images: int = 512, out: Path | None = None) -> dict:
    """Benchmark this machine (matmul, backbone per resolution, training), write the JSON and return it."""
    weights = weights_lib.prepared(ctx)
    backbone = weights_lib.imagenet_backbone(weights)
    batch = ctx.preset.feature_batch
    ctx.echo(f"bench: matrix multiply {MATMUL_N}^2 ...")
    mm = matmul_gflops()
    result = {
        "preset": ctx.preset.name,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "batch": batch,
        "matmul": {"n": MATMUL_N, "gflops": round(mm, 1)},
        "resolutions": {},
    }
    for R in ctx.preset.train_resolutions:
        ctx.echo(f"bench: {R} px ...")
        shapes = backbone.layer_shapes(R)
        per_image = direct_gflop(shapes)
        models = {}
        for plan, m in model_only(backbone, R, batch).items():
            s = m.pop("seconds_per_batch")
            gflops = per_image * batch / s
            models[plan] = {
                "images_per_second": round(batch / s, 1),
                "gflops": round(gflops, 1),
                "share_of_matmul": round(gflops / mm, 2),
            } | m
        e2e = end_to_end(ctx, R, images, weights)
        inputs = [input_only(ctx, R, 8 * images, w) for w in _worker_counts()]
        rate = {x["workers"]: x["images_per_second"] for x in inputs}
        result["resolutions"][str(R)] = {
            "direct_gflop_per_image": round(per_image, 3),
            "model": models,
            "input": inputs,
            "features": e2e,
            "speedup": {
                "model": round(models["chosen"]["images_per_second"] / models["direct"]["images_per_second"], 2),
                "features": round(e2e["chosen"]["images_per_second"] / e2e["direct"]["images_per_second"], 2),
                "input_2_over_1": round(rate[2] / rate[1], 2),
            },
            "layers": layer_rates(backbone, R, batch),
        }
    ctx.echo("bench: training ...")
    result["training"] = {
        "heads": heads_training(ctx, _first_training_rows(ctx), mm),
        "block5": [row for R in ctx.preset.block5.resolutions for row in block5_training(ctx, backbone, R)],
    }
    path = out or ctx.bench_path
    write_json_atomic(path, result)
    ctx.echo(format_table(result))
    ctx.echo(f"bench -> {path}")
    return result


def format_table(b: dict, layers: bool = True) -> str:
    """The tables `bench` prints (docs/speed.md quotes them without the per-layer one)."""
    lines = [
        f"{b['device']} ({b['backend']}, {b['devices']} device(s), {b['cpu_count']} CPUs), jax {b['jax']}, "
        f"batch {b['batch']}; matrix multiply {b['matmul']['n']}^2: {b['matmul']['gflops']:.0f} GFLOP/s",
        "",
    ]
    lines.append("| R | what | images/s | GFLOP/s (direct-conv FLOPs) | share of matmul |")
    lines.append("|---|---|---:|---:|---:|")
    for R, r in b["resolutions"].items():
        for plan, m in r["model"].items():
            lines.append(
                f"| {R} | model, {plan} | {m['images_per_second']:.1f} | {m['gflops']:.0f} | "
                f"{m['share_of_matmul']:.2f} |"
            )
        for x in r["input"]:
            setup = f" (start {x['start_seconds']:.1f} s, stop {x['stop_seconds']:.1f} s)" if x["workers"] else ""
            lines.append(f"| {R} | input pipeline, {x['workers']} workers{setup} | {x['images_per_second']:.1f} | | |")
        for plan, e in r["features"].items():
            lines.append(
                f"| {R} | features end to end, {plan} | {e['images_per_second']:.1f} | "
                f"{e['images_per_second'] * r['direct_gflop_per_image']:.0f} | |"
            )
    lines.append("")
    lines.append(
        "| R | speed-up of chosen over direct: model | features end to end | input pipeline, 2 workers over 1 |"
    )
    lines.append("|---|---:|---:|---:|")
    for R, r in b["resolutions"].items():
        sp = r["speedup"]
        lines.append(f"| {R} | {sp['model']:.2f}x | {sp['features']:.2f}x | {sp['input_2_over_1']:.2f}x |")
    if "training" in b:
        lines += [""] + training_table(b["training"])
    if not layers:
        return "\n".join(lines)
    lines.append("")
    lines.append("| R | layer | map | C_in -> C_out | " + " | ".join(conv.PATHS) + " | chosen |")
    lines.append("|---|---:|---:|---|" + "---:|" * len(conv.PATHS) + "---|")
    for R, r in b["resolutions"].items():
        for x in r["layers"]:
            cells = " | ".join(f"{x['gflops'][p]:.0f}" if p in x["gflops"] else "-" for p in conv.PATHS)
            lines.append(f"| {R} | {x['layer']} | {x['map']} | {x['c_in']} -> {x['c_out']} | {cells} | {x['chosen']} |")
    return "\n".join(lines)


def training_table(t: dict) -> list[str]:
    """Markdown lines of the head-training benchmark `t`."""
    h = t["heads"]
    lines = [
        f"Training heads on random features: {h['rows']:,} rows, {h['epochs']} epochs, batch {h['batch']}, "
        f"{h['mflop_per_example']} MFLOP per example forward and backward:",
        "",
        "| heads | seconds | heads/s | examples/s | GFLOP/s | share of matmul |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in h["runs"].items():
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['heads_per_second']:.3f} | {r['examples_per_second']:,} | "
            f"{r['gflops']:.1f} | {r['share_of_matmul']:.3f} |"
        )
    lines += [
        "",
        "Training block 5 and the head on block-4 maps, images/s per convolution path:",
        "",
        "| R | map | batch | " + " | ".join(conv.PATHS) + " | chosen | chosen / matmul |",
        "|---|---:|---:|" + "---:|" * len(conv.PATHS) + "---|---:|",
    ]
    for r in t["block5"]:
        cells = " | ".join(f"{r['images_per_second'][p]:.0f}" for p in conv.PATHS)
        lines.append(
            f"| {r['R']} | {r['map']}x{r['map']} | {r['batch']} | {cells} | "
            f"{r['chosen']} {r['images_per_second']['chosen']:.0f} | {r['chosen_over_matmul']:.2f}x |"
        )
    return lines


def training_summary(b: dict) -> str:
    """The README's sentence on training speed, from a bench result."""
    h = list(b["training"]["heads"]["runs"].values())
    one, group = h[0], h[-1]
    b5 = max(b["training"]["block5"], key=lambda r: (r["batch"], r["R"]))
    tile = (
        f"Winograd F({conv.WINOGRAD[b5['chosen']]}x{conv.WINOGRAD[b5['chosen']]})"
        if b5["chosen"] in conv.WINOGRAD
        else f"the {b5['chosen']} path"
    )
    text = (
        f"Training on {b['cpu_count']} cores (`bench`): the {group['heads']} seeds of a head train together at "
        f"{group['examples_per_second']:,} examples/s, "
        f"{group['examples_per_second'] / one['examples_per_second']:.1f}x "
        f"one head alone ({group['share_of_matmul']:.0%} of the matrix-multiply rate); block 5 at R = {b5['R']} trains "
        f"at {b5['images_per_second']['chosen']:.0f} images/s (batch {b5['batch']}) by {tile}, "
        f"{b5['chosen_over_matmul']:.1f}x its matrix-product path."
    )
    return textwrap.fill(text, 92) + "\n"
