"""Shared fixtures: the real images in ../shared/data, and a quiet TFDS."""

from __future__ import annotations

import os
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
