"""`python -m study.run prepare`: the summary it writes, doing no work twice, refusing stale data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from study import run
from study.datasets import fake
from study.network import weights


def prepare(tmp: Path, *extra: str, preset: str = "smoke") -> int:
    return run.main(
        [
            "prepare",
            "--preset",
            preset,
            "--data-dir",
            str(tmp / "data"),
            "--out",
            str(tmp / "out"),
            "--tfds-dir",
            str(tmp / "tfds"),
            "--weights-dir",
            str(tmp / "weights"),
            *extra,
        ]
    )


def prepared_files(tmp: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in (tmp / "tfds").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    assert prepare(tmp) == 0
    return tmp


def test_smoke_prepare_writes_the_summary(smoke):
    doc = json.loads((smoke / "out" / "datasets.json").read_text())
    assert set(doc["datasets"]) == {"asl_alphabet", "synthetic_asl_alphabet", "asl_photos"}
    asl = doc["datasets"]["asl_alphabet"]
    assert asl["archive"]["form"] == "zip"  # the smoke data has the Kaggle zip
    assert asl["splits"]["kaggle_test"]["images"] == 28
    for name, d in doc["datasets"].items():
        acc = d["accounting"]
        assert acc["archive_files"] == acc["in_splits"] + acc["left_out_by_guard_band"] + acc["skipped_files"], name
        assert {s["reason"] for s in d["skipped"]}  # every smoke archive has planted defects
    assert doc["provenance"]["packages"]["tensorflow-datasets"]
    assert doc["split"]["guard_frames"] == 10


def test_summary_holds_no_machine_paths(smoke):
    for name in ("datasets.json", "weights.json"):
        text = (smoke / "out" / name).read_text()
        assert str(smoke) not in text and "/tmp" not in text


def test_prepare_converts_the_weights_once(smoke):
    doc = json.loads((smoke / "out" / "weights.json").read_text())
    assert doc["parameters"] == 14_714_688
    assert doc["source_sha256"] == weights.LPIPS_SHA256
    assert doc["preprocessing"]["name"] == "torchvision"
    converted = smoke / "weights" / doc["converted_file"]
    assert weights.load_converted(converted).sha256() == doc["converted_sha256"]


def test_wrong_weights_file_is_refused_by_prepare(tmp_path, capsys):
    bad = tmp_path / "vgg16.npz"
    import numpy as np

    np.savez(bad, something=np.zeros(3))
    fake.write_all(tmp_path / "data")
    assert prepare(tmp_path, "--weights", str(bad)) == 2
    assert "missing ['features.0.bias'" in capsys.readouterr().err


def test_second_run_does_no_work(smoke, capsys):
    before = prepared_files(smoke)
    summary = (smoke / "out" / "datasets.json").read_text()
    assert prepare(smoke) == 0
    assert prepared_files(smoke) == before  # nothing rebuilt
    assert (smoke / "out" / "datasets.json").read_text() == summary
    assert "Downloading and preparing" not in capsys.readouterr().out


def test_changed_archive_is_refused_then_rebuilt_with_force(tmp_path, capsys):
    assert prepare(tmp_path) == 0
    files_before = json.loads((tmp_path / "out/datasets.json").read_text())["datasets"]["asl_photos"]["archive"][
        "files"
    ]
    extra = tmp_path / "data/asl-photos/train/A/A9999.jpg"
    shutil.copy(tmp_path / "data/asl-photos/train/A/A0.jpg", extra)
    capsys.readouterr()
    assert prepare(tmp_path) == 2
    err = capsys.readouterr().err
    assert "asl_photos" in err and "changed" in err and "--force" in err
    assert prepare(tmp_path, "--force") == 0
    doc = json.loads((tmp_path / "out/datasets.json").read_text())
    d = doc["datasets"]["asl_photos"]
    assert d["archive"]["files"] == files_before + 1
    assert d["accounting"]["archive_files"] == files_before + 1


def test_unknown_preset_lists_the_valid_ones(capsys):
    assert run.main(["prepare", "--preset", "huge"]) == 2
    assert "valid presets: smoke, cpu, paper" in capsys.readouterr().err


def test_no_dataset_found_says_where_each_goes(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert prepare(tmp_path, preset="cpu") == 2
    err = capsys.readouterr().err
    data = tmp_path / "data"
    assert f"{data}/asl-alphabet/" in err
    assert f"kaggle datasets download -d grassknoted/asl-alphabet -p {data}/asl-alphabet" in err
    assert f"{data}/synthetic-asl-alphabet/" in err and f"{data}/asl-photos/" in err
    assert "python -m study.run all --preset smoke" in err


def test_smoke_generates_its_data_only_when_absent(tmp_path):
    fake.write_all(tmp_path / "data")
    marker = tmp_path / "data/asl-photos/train/A/A0.jpg"
    mtime = marker.stat().st_mtime_ns
    assert prepare(tmp_path) == 0
    assert marker.stat().st_mtime_ns == mtime


def test_prepare_again_changes_no_file_whose_content_is_the_same(smoke):
    """Run again with the same data and weights, prepare rewrites neither summary, even where
    the code's commit differs: a README command leaves the committed record's files alone."""
    files = [smoke / "out" / name for name in ("datasets.json", "weights.json")]
    for f in files:
        doc = json.loads(f.read_text())
        doc["provenance"]["git"] = {"commit": "an older commit", "dirty": False}
        f.write_text(json.dumps(doc))
    before = [f.read_bytes() for f in files]
    assert prepare(smoke) == 0
    assert [f.read_bytes() for f in files] == before
