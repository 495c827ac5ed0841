"""The TFDS builders on generated archives in the exact Kaggle and folder layouts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from study.core import labels
from study.core.config import SMOKE
from study.datasets import DATASETS, DatasetError, fake
from study.datasets.build import read_index, summarize


def build(name: str, manual: Path, tfds_dir: Path, preset=SMOKE):
    builder = DATASETS[name].make_builder(preset, tfds_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder


def files_by_split(builder) -> dict[str, set[str]]:
    return {s: set(v["file"]) for s, v in read_index(builder).items()}


def skipped_paths(builder) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in builder.info.metadata["skipped"]}


@pytest.fixture(scope="module")
def asl_both(tmp_path_factory):
    """asl_alphabet built from the unzipped layout and from the zip, with the same files."""
    root = tmp_path_factory.mktemp("asl")
    planted = fake.write_asl_alphabet(root / "dir" / "asl-alphabet")["planted"]
    fake.write_asl_alphabet(root / "zip" / "asl-alphabet", zipped=True)
    return {
        "dir": build("asl_alphabet", root / "dir" / "asl-alphabet", root / "tfds_dir"),
        "zip": build("asl_alphabet", root / "zip" / "asl-alphabet", root / "tfds_zip"),
        "planted": planted,
    }


def test_unzipped_and_zipped_archives_give_the_same_dataset(asl_both):
    d, z = asl_both["dir"], asl_both["zip"]
    assert d.info.metadata["archive"]["form"] == "directory"
    assert z.info.metadata["archive"]["form"] == "zip"
    assert files_by_split(d) == files_by_split(z)
    assert set(files_by_split(d)) == {"train", "validation", "test", "kaggle_test"}
    src_d, src_z = d.as_data_source(), z.as_data_source()
    a = sorted(((r["file"], r["image"].tobytes()) for r in src_d["test"]))
    b = sorted(((r["file"], r["image"].tobytes()) for r in src_z["test"]))
    assert a == b


def test_examples_carry_image_labels_file_and_frame(asl_both):
    src = asl_both["dir"].as_data_source()
    ex = src["train"][0]
    assert ex["image"].shape == (SMOKE.storage_size,) * 2 + (3,) and ex["image"].dtype == np.uint8
    file = ex["file"].decode()
    folder = file.split("/")[-2]
    assert labels.CANONICAL[ex["label"]] == labels.canonical_label(folder)
    assert ex["source_label"].decode() == folder
    assert file.endswith(f"{ex['frame']}.jpg")
    kt = src["kaggle_test"]
    assert len(kt) == 28
    assert {labels.CANONICAL[r["label"]] for r in kt} == set(labels.CANONICAL) - {"del"}
    assert all(r["frame"] == -1 for r in kt)


def test_every_planted_defect_is_skipped_listed_and_in_no_split(asl_both):
    b = asl_both["dir"]
    skipped = skipped_paths(b)
    in_splits = set().union(*files_by_split(b).values())
    reasons = {
        "corrupt": "corrupt image",
        "empty": "empty file",
        "not_image": "not an image",
        "no_frame": "no frame number",
    }
    for path, kind in asl_both["planted"].items():
        assert path not in in_splits
        if kind == "unexpected_folder":
            folder = path.rsplit("/", 1)[0] + "/"
            assert skipped[folder] == "unknown class folder"
        else:
            assert reasons[kind] in skipped[path], (path, skipped.get(path))
    s = summarize(b)
    acc = s["accounting"]
    assert acc["archive_files"] == acc["in_splits"] + acc["left_out_by_guard_band"] + acc["skipped_files"]


def test_split_guarantees_hold_in_the_written_dataset(asl_both):
    s = summarize(asl_both["dir"])
    for split in ("train", "validation", "test"):
        assert set(s["splits"][split]["per_class"]) == set(labels.CANONICAL)
    assert s["min_frame_distance"]["test_to_train_or_validation"] > SMOKE.split.guard_frames
    assert s["min_frame_distance"]["validation_to_train"] > SMOKE.split.guard_frames
    groups = files_by_split(asl_both["dir"])
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not groups[a] & groups[b], (a, b)


def test_guard_band_leaves_out_near_frames_and_lists_them(tmp_path):
    """Frames 3 apart: the guard band must drop the neighbours of every test run."""
    fake.write_asl_alphabet(tmp_path / "asl-alphabet", per_class=120, frame_step=3, size=16, defects=False)
    b = build("asl_alphabet", tmp_path / "asl-alphabet", tmp_path / "tfds")
    s = summarize(b)
    left = s["left_out_by_guard_band"]
    assert left["images"] > 0 and set(left["per_class"]) == set(labels.CANONICAL)
    assert all("guard band" in x["reason"] for x in left["files"])
    assert s["min_frame_distance"]["test_to_train_or_validation"] > 10
    assert s["accounting"]["in_splits"] + left["images"] == s["accounting"]["archive_files"]


def test_missing_archive_names_the_expected_files_and_the_download(tmp_path):
    (tmp_path / "asl-alphabet").mkdir()
    with pytest.raises(DatasetError) as e:
        build("asl_alphabet", tmp_path / "asl-alphabet", tmp_path / "tfds")
    msg = str(e.value)
    assert "asl_alphabet_train/asl_alphabet_train/" in msg and "asl_alphabet_test/" in msg
    assert "asl-alphabet.zip" in msg
    assert "kaggle datasets download -d grassknoted/asl-alphabet" in msg


def test_missing_lexset_archive_gives_its_download(tmp_path):
    (tmp_path / "synthetic-asl-alphabet").mkdir()
    with pytest.raises(DatasetError, match="kaggle datasets download -d lexset/synthetic-asl-alphabet"):
        build("synthetic_asl_alphabet", tmp_path / "synthetic-asl-alphabet", tmp_path / "tfds")


def test_missing_class_folder_is_named(tmp_path):
    classes = tuple(c for c in labels.CANONICAL if c not in ("Q", "space"))
    fake.write_asl_alphabet(tmp_path / "a", classes=classes, defects=False, size=16)
    with pytest.raises(DatasetError, match=r"missing.*\['Q', 'space'\]"):
        build("asl_alphabet", tmp_path / "a", tmp_path / "tfds")


def test_empty_class_folder_is_an_error(tmp_path):
    fake.write_asl_alphabet(tmp_path / "a", defects=False, size=16)
    kdir = tmp_path / "a/asl_alphabet_train/asl_alphabet_train/K"
    for f in kdir.iterdir():
        f.unlink()
    (kdir / "readme.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match="'K'"):
        build("asl_alphabet", tmp_path / "a", tmp_path / "tfds")


def test_truncated_zip_is_refused_with_advice(tmp_path):
    fake.write_asl_alphabet(tmp_path / "a", zipped=True, size=16)
    z = tmp_path / "a" / "asl-alphabet.zip"
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(DatasetError, match="not a readable zip.*download it again"):
        build("asl_alphabet", tmp_path / "a", tmp_path / "tfds")


def test_archive_unzipped_one_folder_down_is_found(tmp_path):
    fake.write_asl_alphabet(tmp_path / "a" / "asl-alphabet", defects=False, size=16)
    b = build("asl_alphabet", tmp_path / "a", tmp_path / "tfds")
    assert len(b.as_data_source()["kaggle_test"]) == 28


@pytest.mark.parametrize("zipped", [False, True])
def test_lexset_layout_official_split_and_validation_carve_out(tmp_path, zipped):
    planted = fake.write_synthetic_asl_alphabet(tmp_path / "s", zipped=zipped)["planted"]
    b = build("synthetic_asl_alphabet", tmp_path / "s", tmp_path / "tfds")
    s = summarize(b)
    assert set(s["splits"]) == {"train", "validation", "test"}
    assert s["splits"]["test"]["images"] == 27 * 4
    # 12 train renders per class, minus the planted bad ones in A and B; 10% to validation.
    assert s["splits"]["validation"]["per_class"]["C"] == 1
    assert s["splits"]["train"]["per_class"]["C"] == 11
    assert set(s["splits"]["test"]["per_class"]) == set(labels.LETTERS) | {"nothing"}
    assert s["min_frame_distance"] is None  # renders have no frames
    src = b.as_data_source()["test"]
    blank = [r for r in src if r["source_label"] == b"Blank"]
    assert len(blank) == 4 and all(labels.CANONICAL[r["label"]] == "nothing" for r in blank)
    assert all(r["frame"] == -1 for r in src)
    skipped = skipped_paths(b)
    for path, kind in planted.items():
        key = path.rsplit("/", 1)[0] + "/" if kind == "unexpected_folder" else path
        assert key in skipped


def test_lexset_blank_switched_off_is_left_out_and_listed(tmp_path):
    fake.write_synthetic_asl_alphabet(tmp_path / "s", defects=False, size=16)
    preset = dataclasses.replace(SMOKE, blank_as_nothing=False)
    b = build("synthetic_asl_alphabet", tmp_path / "s", tmp_path / "tfds", preset)
    s = summarize(b)
    assert "nothing" not in s["splits"]["test"]["per_class"]
    assert skipped_paths(b)["Test_Alphabet/Blank/"].startswith("Blank left out")
    # A different switch is a different prepared dataset, never a reused one.
    assert (
        b.info.config_name != DATASETS["synthetic_asl_alphabet"].make_builder(SMOKE, tmp_path / "tfds").info.config_name
    )


def test_folder_builder_splits_by_frames_case_insensitively(tmp_path):
    planted = fake.write_asl_folder(tmp_path / "asl-photos")["planted"]
    b = build("asl_photos", tmp_path / "asl-photos", tmp_path / "tfds")
    s = summarize(b)
    assert set(s["splits"]) == {"train", "validation", "test"}
    for split in s["splits"].values():
        assert set(split["per_class"]) == set(labels.CANONICAL)  # Del, Nothing, Space matched
    assert s["min_frame_distance"]["test_to_train_or_validation"] > 10
    skipped = skipped_paths(b)
    assert "no frame number" in skipped[next(p for p, k in planted.items() if k == "no_frame")]
    assert skipped["train/extra/"] == "unknown class folder"


def test_folder_builder_keeps_the_splits_it_is_given(tmp_path):
    root = tmp_path / "photos"
    fake.write_asl_folder(root, split_dir="train", defects=False, size=16)
    fake.write_asl_folder(root, split_dir="Test", defects=False, size=16, per_class=3, seed=1)
    b = build("asl_photos", root, tmp_path / "tfds")
    s = summarize(b)
    assert s["splits"]["test"]["images"] == 29 * 3  # kept whole
    assert (
        s["splits"]["train"]["images"] + s["splits"]["validation"]["images"] + s["left_out_by_guard_band"]["images"]
        == 29 * 12
    )
    assert "given train/test kept" in s["split_rule"]


def test_flat_folder_of_class_folders(tmp_path):
    fake.write_asl_folder(tmp_path / "flat", split_dir=None, defects=False, size=16)
    s = summarize(build("asl_photos", tmp_path / "flat", tmp_path / "tfds"))
    assert set(s["splits"]) == {"train", "validation", "test"}


def test_folder_without_class_folders_is_a_clear_error(tmp_path):
    (tmp_path / "f" / "holiday").mkdir(parents=True)
    (tmp_path / "f" / "holiday" / "x.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"no recognisable class folders.*holiday"):
        build("asl_photos", tmp_path / "f", tmp_path / "tfds")


def test_building_leaves_no_temporary_folders(tmp_path, monkeypatch):
    """TFDS's GCS look-up made an empty tmp*tfds folder per unprepared builder; ours never
    look there."""
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    fake.write_asl_folder(tmp_path / "photos", per_class=6, defects=False)
    b = build("asl_photos", tmp_path / "photos", tmp_path / "tfds")
    assert b.is_prepared() and DATASETS["asl_photos"].make_builder(SMOKE, tmp_path / "tfds").is_prepared()
    assert list(temp.iterdir()) == []
