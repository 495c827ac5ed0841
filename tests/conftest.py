"""Shared fixtures: the real images in ../shared/data, and the process set up as the command line sets it up
(study.runtime): JAX's random streams, a quiet absl and TFDS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo with ../shared beside it; STUDY_SHARED_DATA points elsewhere if needed.
SHARED_DATA = Path(os.environ.get("STUDY_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    from study import runtime

    # The random streams the study's seeds were drawn with, set where the program starts, as
    # the command line sets them (study.runtime): threefry, not partitionable.
    runtime.configure_jax()
    runtime.quiet_libraries()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real images; a missing folder fails the test (it is never skipped)."""
    if not (SHARED_DATA / "asl-alphabet").is_dir():
        pytest.fail(
            f"real data not found at {SHARED_DATA} (expected ../shared/data beside the repo, "
            "or STUDY_SHARED_DATA); the tests on real images cannot run without it"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """`python -m study.run all --preset smoke`, as the README says, in a fresh clone: one run that
    the slow tests of several files share (tests/smoke.py says where it puts things)."""
    repo = clone(tmp_path_factory.mktemp("pipeline") / "repo")
    proc = in_clone(repo, "all", "--preset", "smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return repo


def clone(dest: Path) -> Path:
    """A clone of the repository's committed state, as a new user gets it."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return dest


def in_clone(repo: Path, *argv: str, **kw) -> subprocess.CompletedProcess:
    """`python -m study.run ARGV` typed in the clone `repo`, run with this checkout's code (so
    that the test checks the code under test, committed or not)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONSAFEPATH="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "study.run", *argv], cwd=repo, env=env, capture_output=True, text=True, **kw
    )


def git_status(repo: Path, untracked: str = "all") -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", f"--untracked-files={untracked}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def tiny_results(out: Path, preset, datasets: dict[str, dict[str, list[str]]]):
    """A results folder as `prepare` leaves it (datasets.json, weights.json) for datasets given
    as {name: {split: [labels]}}, ten images per label, without any image; its Context."""
    import json

    from study.core.context import Context

    out.mkdir(parents=True, exist_ok=True)
    summary = {
        n: {
            "tfds_name": n,
            "archive": {"listing_sha256": f"listing of {n}"},
            "splits": {s: {"images": 10 * len(c), "per_class": {x: 10 for x in c}} for s, c in splits.items()},
        }
        for n, splits in datasets.items()
    }
    (out / "datasets.json").write_text(json.dumps({"preset": preset.name, "datasets": summary}))
    (out / "weights.json").write_text(
        json.dumps({"converted_sha256": "0123456789abcdef" * 4, "converted_file": "w.npz"})
    )
    return Context(preset, out / "data", out, out / "tfds", out / "cache", out / "weights", echo=lambda s: None)


def write_features(ctx, unit, x, y) -> None:
    """A features unit in the cache as the features stage writes it (study.core.store)."""
    import numpy as np

    from study.core import store
    from study.core.units import mark_done

    d = store.features_dir(ctx, unit)
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "feats.npy", np.asarray(x, np.float32))
    np.save(d / "labels.npy", np.asarray(y, np.int64))
    mark_done(d / "unit.json", store.features_spec(ctx, unit), [d / "feats.npy", d / "labels.npy"], images=len(y))
