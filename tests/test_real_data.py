"""The splits on the real images in ../shared/data (its README.md says where they come from).

Built once per session at a small storage size (the split does not depend on it), through the
same `prepare` stage a user runs.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from study.core import labels
from study.core.config import CPU
from study.stages.prepare import prepare

GUARD = CPU.split.guard_frames


pytestmark = pytest.mark.slow  # minutes: the command line in a clone, or prepare on the real images


@pytest.fixture(scope="module")
def real(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    preset = dataclasses.replace(
        CPU,
        name="real-test",
        storage_size=32,
        train_resolutions=(32,),
        eval_resolutions=(32,),
        augment=dataclasses.replace(CPU.augment, resolutions=()),
        block5=dataclasses.replace(CPU.block5, resolutions=()),
    )
    prepare(preset, shared_data, tmp / "out", tmp / "tfds", echo=lambda s: None)
    return json.loads((tmp / "out" / "datasets.json").read_text())


def _manifest(shared_data, folder):
    rows = (shared_data / folder / "MANIFEST.tsv").read_text().splitlines()[1:]
    return [r.split("\t") for r in rows]


def _check_frame_split(d, n_images, classes):
    splits = d["splits"]
    in_frame_splits = sum(splits[s]["images"] for s in ("train", "validation", "test"))
    left = d["left_out_by_guard_band"]["images"]
    # Every training-archive image is in exactly one split or listed as left out.
    assert in_frame_splits + left == n_images
    assert left <= 0.10 * n_images
    for s in ("train", "validation", "test"):
        assert set(splits[s]["per_class"]) == set(classes), s
    mfd = d["min_frame_distance"]
    assert mfd["test_to_train_or_validation"] >= GUARD + 1
    assert mfd["validation_to_train"] >= GUARD + 1
    share = {s: splits[s]["images"] / in_frame_splits for s in ("train", "validation", "test")}
    assert share["train"] == pytest.approx(0.70, abs=0.05)
    assert share["validation"] == pytest.approx(0.15, abs=0.04)
    assert share["test"] == pytest.approx(0.15, abs=0.04)


def test_asl_alphabet_subset(real, shared_data):
    d = real["datasets"]["asl_alphabet"]
    manifest = _manifest(shared_data, "asl-alphabet")
    n_train_archive = sum(1 for r in manifest if r[4] == "train")
    assert n_train_archive == 8700
    _check_frame_split(d, n_train_archive, labels.CANONICAL)
    assert d["splits"]["kaggle_test"]["images"] == 28
    assert set(d["splits"]["kaggle_test"]["per_class"]) == set(labels.CANONICAL) - {"del"}
    # The only file of the folder that is no image of the layout is its manifest.
    assert [s["path"] for s in d["skipped"]] == ["MANIFEST.tsv"]


def test_asl_photos(real, shared_data):
    d = real["datasets"]["asl_photos"]
    assert len(_manifest(shared_data, "asl-photos")) == 4350
    _check_frame_split(d, 4350, labels.CANONICAL)
    assert [s["path"] for s in d["skipped"]] == ["MANIFEST.tsv"]


def test_lexset_absent_here_is_reported_not_invented(real):
    assert "synthetic_asl_alphabet" not in real["datasets"]
    assert "synthetic_asl_alphabet" in real["not_found"]
