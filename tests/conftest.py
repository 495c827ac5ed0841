"""Shared fixtures: the real images in ../shared/data, and a quiet TFDS."""

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
    import absl.logging
    import tensorflow_datasets as tfds

    absl.logging.set_verbosity(absl.logging.ERROR)
    tfds.disable_progress_bar()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real images; a missing folder fails the test (it is never skipped)."""
    if not (SHARED_DATA / "asl-alphabet").is_dir():
        pytest.fail(
            f"real data not found at {SHARED_DATA} (expected ../shared/data beside the repo, "
            "or STUDY_SHARED_DATA); the tests on real images cannot run without it"
        )
    return SHARED_DATA


def clone(dest: Path) -> Path:
    """A clone of the repository's committed state, as a new user gets it."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return dest


def in_clone(repo: Path, *argv: str, **kw) -> subprocess.CompletedProcess:
    """`python -m study.run ARGV` typed in the clone `repo`, run with this checkout's code (so
    that the test checks the code under test, committed or not)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONSAFEPATH="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "study.run", *argv], cwd=repo, env=env, capture_output=True, text=True, **kw)


def git_status(repo: Path, untracked: str = "all") -> str:
    return subprocess.run(["git", "status", "--porcelain", f"--untracked-files={untracked}"], cwd=repo,
                          capture_output=True, text=True, check=True).stdout
