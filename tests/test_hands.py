"""Hand landmarks (study.hands): MediaPipe's own numbers on real images, the tries, the model
files checked, a unit that resumes, and the summary that datasets.json carries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import REPO
from study.core import store
from study.core.errors import WeightsError
from study.datasets import pipeline
from study.hands import detector, landmarks

REFERENCE = REPO / "tests" / "reference" / "hands_mediapipe.json"
PLAIN, BORDER, BRIGHT = ("plain", 0.0, 1.0), ("border", 0.25, 1.0), ("bright", 0.0, 0.5)


@pytest.fixture(scope="module")
def landmarker():
    return detector.HandLandmarker.load()


def upright(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.mark.slow
def test_landmarks_agree_with_mediapipe_on_real_images(landmarker, shared_data):
    """The golden test: on the 20 real images of scripts/hand_reference.py, the same images
    with and without a hand as MediaPipe's `solutions.hands`, the same handedness, and every
    landmark within 3 px (measured when the reference was made: worst landmark per image a
    median 0.1 px, at most 2.6 px; 19 hands)."""
    ref = json.loads(REFERENCE.read_text())
    assert len(ref["images"]) == 20 and ref["mediapipe"] == "0.10.14"
    worst = []
    for r in ref["images"]:
        image = upright(shared_data / r["file"])
        assert [image.shape[1], image.shape[0]] == r["size"], r["file"]
        hand = landmarker(image)
        assert (hand is None) == (r["hand"] is None), r["file"]
        if hand is None:
            continue
        want = np.asarray(r["hand"]["landmarks"])
        worst.append(np.abs((hand.landmarks[:, :2] - want[:, :2]) * r["size"]).max())
        assert np.abs(hand.landmarks[:, 2] - want[:, 2]).max() < 0.02, r["file"]
        assert hand.handedness == r["hand"]["handedness"], r["file"]
    assert len(worst) >= 15
    assert max(worst) < 3.0 and np.median(worst) < 0.5, worst


@pytest.mark.slow
def test_a_changed_try_maps_its_landmarks_back_into_the_image(landmarker, shared_data):
    """A hand found through a black border, or in brightened pixels, has its landmarks in the
    original image's coordinates: within a few pixels of the plain try's."""
    ref = json.loads(REFERENCE.read_text())
    found = {BORDER: [], BRIGHT: []}
    for r in ref["images"]:
        if r["hand"] is None:
            continue
        image = upright(shared_data / r["file"])
        plain, k = landmarks.detect(landmarker, image, [PLAIN])
        assert k == 0
        for t in found:
            hand, k = landmarks.detect(landmarker, image, [t])
            if hand is not None:
                assert k == 0
                err = np.abs((hand.landmarks[:, :2] - plain.landmarks[:, :2]) * r["size"])
                found[t].append(np.median(err))
    for t, errs in found.items():
        assert len(errs) >= 8 and np.median(errs) < 3, (t, errs)


def test_the_tries_change_pixels_as_they_say():
    image = np.full((10, 20, 3), 64, np.uint8)
    same, pad = landmarks.changed(image, 0.0, 1.0)
    assert pad == 0 and same is image
    bordered, pad = landmarks.changed(image, 0.25, 1.0)
    assert pad == 5 and bordered.shape == (20, 30, 3)
    assert bordered[:5].max() == 0 and bordered[5:15, 5:25].min() == 64
    bright, _ = landmarks.changed(image, 0.0, 0.5)
    assert bright.min() == round(255 * (64 / 255) ** 0.5) == 128


def test_no_hand_is_a_miss_with_every_try(landmarker):
    hand, k = landmarks.detect(landmarker, np.zeros((120, 160, 3), np.uint8), [PLAIN, BORDER, BRIGHT])
    assert hand is None and k == -1
    r = landmarks.row(hand, k, np.zeros((120, 160, 3), np.uint8))
    assert r["tried"] == -1 and np.isnan(r["landmarks"]).all() and r["size"].tolist() == [160, 120]


def test_landmarks_move_into_the_stored_square():
    """The stored image is the original's centre square (study.datasets.images.square_resize)."""
    size = np.array([[300, 200], [200, 300], [100, 100]])
    pts = np.array([[[0.5, 0.5]], [[0.5, 0.5]], [[0.25, 0.75]]])
    got = landmarks.to_stored(pts, size)
    np.testing.assert_allclose(got[:, 0], [[0.5, 0.5], [0.5, 0.5], [0.25, 0.75]], atol=1e-6)
    edge = landmarks.to_stored(np.array([[[50 / 300, 0.0]]]), np.array([[300, 200]]))
    np.testing.assert_allclose(edge[0, 0], [0.0, 0.0], atol=1e-6)


def test_a_model_file_that_is_missing_or_different_is_refused(tmp_path):
    for name, _ in detector.MODEL_FILES.values():
        shutil.copy(detector.MODELS_DIR / name, tmp_path / name)
    assert set(detector.model_files(tmp_path)) == {"palm", "landmark"}
    palm = tmp_path / detector.MODEL_FILES["palm"][0]
    data = bytearray(palm.read_bytes())
    data[-1] ^= 0xFF
    palm.write_bytes(bytes(data))
    with pytest.raises(
        WeightsError, match=f"expected {detector.MODEL_FILES['palm'][1]}.*pip download mediapipe==0.10.14"
    ):
        detector.model_files(tmp_path)
    palm.unlink()
    with pytest.raises(WeightsError, match="missing.*pip download"):
        detector.model_files(tmp_path)


def _unit(tmp: Path, files: list[str]) -> landmarks.Unit:
    from study.datasets.archive import Archive

    archive = Archive(tmp / "archive")
    spec = store.hands_spec("fp", "train", [PLAIN])
    return landmarks.Unit(
        "photos/train",
        store.HandFiles(tmp / "cache" / "train"),
        spec,
        tuple(files),
        (str(archive.path), archive.prefix),
    )


@pytest.mark.slow
def test_an_interrupted_unit_resumes_from_its_last_chunk(tmp_path, shared_data):
    """Killed after its first chunk, a unit keeps it and computes only the others; the result is
    the same as a run that was never interrupted."""
    src = sorted((shared_data / "asl-photos" / "train" / "B").glob("*.jpg"))[:5]
    (tmp_path / "archive" / "B").mkdir(parents=True)
    for p in src:
        shutil.copy(p, tmp_path / "archive" / "B" / p.name)
    files = [f"B/{p.name}" for p in src]
    unit = _unit(tmp_path, files)
    jobs = unit.jobs(2, [PLAIN])
    assert jobs.todo == (0, 1, 2)

    def stops_after_one(it):
        yield next(it)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        landmarks.compute(unit, jobs, stops_after_one(pipeline.batches(jobs)), echo=lambda s: None)
    assert not unit.done() and unit.jobs(2, [PLAIN]).todo == (1, 2)
    said = []
    rest = unit.jobs(2, [PLAIN])
    rec = landmarks.compute(unit, rest, pipeline.batches(rest), echo=said.append)
    assert unit.done() and rec["images"] == 5 and "resuming, 2 of 3 chunks left" in said[0]
    resumed = store.hands_arrays(unit.where)
    again = _unit(tmp_path / "fresh", files)
    (tmp_path / "fresh").mkdir()
    shutil.copytree(tmp_path / "archive", tmp_path / "fresh" / "archive")
    whole = again.jobs(2, [PLAIN])
    landmarks.compute(again, whole, pipeline.batches(whole, workers=2), echo=lambda s: None)
    for f in store.HANDS_FIELDS:
        np.testing.assert_array_equal(resumed[f], store.hands_arrays(again.where)[f])
    assert (resumed["tried"] == 0).sum() >= 4  # the hands in these photos are found
    assert not any(unit.where.root.glob("parts-*"))


def test_the_summary_counts_by_split_and_class_and_lists_every_miss():
    def arrays(tried):
        n = len(tried)
        return {"tried": np.asarray(tried, np.int8), "landmarks": np.zeros((n, 21, 3), np.float32)}

    per_split = {
        "train": (arrays([0, -1, 1, 0]), np.array([0, 0, 1, 2]), ("a0", "a1", "b0", "c0")),
        "test": (arrays([-1]), np.array([2]), ("c1",)),
    }
    s = landmarks.summarize(per_split, [PLAIN, BORDER], ["A", "B", "C"])
    assert s["images"] == 5 and s["found"] == 3 and s["rate"] == 0.6
    assert s["splits"]["train"]["per_class"] == {
        "A": {"images": 2, "found": 1},
        "B": {"images": 1, "found": 1},
        "C": {"images": 1, "found": 1},
    }
    assert s["splits"]["train"]["by_try"] == {"plain": 2, "border": 1}
    assert s["misses"] == {"train": ["a1"], "test": ["c1"]}
    assert "3 of 5 images (60.0%)" in landmarks.format_summary("x", s)


@pytest.mark.slow
def test_the_smoke_run_reports_detection_for_every_split(smoke):
    """`all --preset smoke` ran the hands stage: datasets.json says, for every split of every
    dataset, how many images had a hand, by class, and lists the others."""
    from smoke import layout

    doc = json.loads((layout(smoke)["out"] / "datasets.json").read_text())
    for d in doc["datasets"].values():
        h = d["hands"]
        assert h["tries"] == ["plain"]
        for split, info in d["splits"].items():
            got = h["splits"][split]
            assert got["images"] == info["images"]
            assert sum(c["images"] for c in got["per_class"].values()) == info["images"]
            assert got["found"] + len(h["misses"][split]) == info["images"]
        assert h["found"] < h["images"]  # generated images: mostly no hand
    assert any(layout(smoke)["cache"].glob("hands/*/*/*/hands.npz"))


@pytest.mark.slow
def test_the_smoke_run_measures_heat_on_the_hand(smoke):
    """evaluate writes Grad-CAM's share of heat in the hand's box for every model and test set
    of the sample, over the images where a hand was found, and the paper shows it."""
    from smoke import context, layout
    from study.core import store

    ctx = context(smoke)
    rows = store.read_hand_share(layout(smoke)["out"] / "gradcam" / "hand_share.csv")
    assert {(r["model"], r["R"], r["eval_dataset"]) for r in rows} == {
        (n, R, d) for n, R, _ in ctx.plan.gradcam_models() for d in ctx.plan.dataset_names
    }
    for r in rows:
        assert 0 <= r["with_hand"] <= r["images"]
        assert (r["share"] is None) == (r["with_hand"] == 0)
        if r["share"] is not None:
            assert 0 <= r["share_ci_low"] <= r["share"] <= r["share_ci_high"] <= 1 and 0 < r["box_area"] <= 1
    assert "share of heat in the hand's box" in (layout(smoke)["paper"] / "paper.md").read_text()
