"""Where a smoke run puts things, and how the tests that share it call the command line: the
defaults inside a clone, or folders of a temporary directory named by options. The run itself
is the `smoke` fixture (conftest.py)."""

from __future__ import annotations

import csv
from pathlib import Path

from study.core.config import SMOKE
from study.core.context import Context

# Where a run puts things: the defaults inside a clone (`in_clone`), or folders of a temporary
# directory named by options (`in_tmp`).
LAYOUT_CLONE = {
    "data": "data/smoke",
    "out": "results/smoke",
    "tfds": "data/tfds",
    "cache": "data/cache",
    "weights": "data/weights",
    "paper": "results/smoke/paper",
}
LAYOUT_TMP = {"data": "data", "out": "out", "tfds": "tfds", "cache": "cache", "weights": "weights", "paper": "paper"}


def layout(tmp: Path) -> dict[str, Path]:
    return {k: tmp / v for k, v in (LAYOUT_CLONE if (tmp / ".git").exists() else LAYOUT_TMP).items()}


def args(tmp: Path, stage: str = "all", *extra: str) -> list[str]:
    p = layout(tmp)
    return [
        stage,
        "--preset",
        "smoke",
        "--data-dir",
        str(p["data"]),
        "--out",
        str(p["out"]),
        "--tfds-dir",
        str(p["tfds"]),
        "--cache-dir",
        str(p["cache"]),
        "--weights-dir",
        str(p["weights"]),
        "--paper-dir",
        str(p["paper"]),
        *extra,
    ]


def context(tmp: Path, preset=SMOKE, force=False) -> Context:
    p = layout(tmp)
    return Context(preset, p["data"], p["out"], p["tfds"], p["cache"], p["weights"], force, lambda s: None)


def outputs(tmp: Path) -> dict[str, int]:
    p = layout(tmp)
    return {
        str(f.relative_to(tmp)): f.stat().st_mtime_ns for d in ("out", "cache") for f in p[d].rglob("*") if f.is_file()
    }


def read_table(tmp: Path) -> list[dict]:
    with open(layout(tmp)["out"] / "table.csv") as f:
        return list(csv.DictReader(f))
