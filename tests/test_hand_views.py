"""The hand as a view of every image (docs/method.md, the hands): hand crops and the landmark classifier."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import tiny_results, write_features
from study.core import store
from study.core.config import SMOKE
from study.core.hand import augment_landmarks, crop_boxes, landmark_vectors, pixel_box
from study.core.labels import CANONICAL
from study.core.names import LANDMARKS_R
from study.core.plan import Unit
from study.core.units import mark_done

NOTHING = CANONICAL.index("nothing")


def _hands(n: int, rng) -> np.ndarray:
    """N plausible hands: 21 points around (0.5, 0.5), the middle knuckle (9) above the wrist (0)."""
    pts = rng.uniform(0.35, 0.65, (n, 21, 3)).astype(np.float32)
    pts[:, 0, :2], pts[:, 9, :2] = (0.5, 0.7), (0.5, 0.5)
    pts[..., 2] = rng.normal(0, 0.02, (n, 21))
    return pts


def test_landmark_vectors_forget_where_the_hand_is_its_size_and_which_hand_signs():
    rng = np.random.default_rng(0)
    pts, size = _hands(5, rng), np.array([[200, 200]] * 5)
    right = np.zeros(5, np.float32)
    v = landmark_vectors(pts, right, size)
    assert v.shape == (5, 63) and v.dtype == np.float32
    moved = pts.copy()
    moved[..., :2] += (0.1, -0.05)
    np.testing.assert_allclose(landmark_vectors(moved, right, size), v, atol=1e-5)
    np.testing.assert_allclose(
        landmark_vectors(pts, right, size * 3), v, atol=1e-5
    )  # the same hand, three times larger
    mirrored = pts.copy()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    np.testing.assert_allclose(landmark_vectors(mirrored, 1 - right, size), v, atol=1e-5)  # a left hand: mirrored back
    assert not np.allclose(
        landmark_vectors(mirrored, right, size), v
    )  # the same mirror image, not turned back, differs
    # an image that is not square: x and y are measured in pixels, not in fractions of each side
    wide = pts.copy()
    wide[..., 0] = (wide[..., 0] * 200 + 100) / 400
    wide[..., 2] /= 2  # z is in units of the image's width
    np.testing.assert_allclose(landmark_vectors(wide, right, np.array([[400, 200]] * 5)), v, atol=1e-5)
    missing = np.full((1, 21, 3), np.nan, np.float32)
    assert not landmark_vectors(missing, np.array([np.nan]), np.array([[10, 10]])).any()


def test_an_augmented_hand_is_turned_stretched_and_sheared_about_its_wrist():
    rng = np.random.default_rng(0)
    pts, size = _hands(6, rng), np.array([[300, 200]] * 6)
    pts[5] = np.nan  # no hand: stays none
    same = augment_landmarks(pts, size, np.random.default_rng(1), 0.0, (1.0, 1.0), 0.0)
    np.testing.assert_allclose(same[:5], pts[:5], atol=1e-6)
    turned = augment_landmarks(pts, size, np.random.default_rng(1), 15.0, (1.0, 1.0), 0.0)

    def px(p):
        return p[..., :2] * size[: len(p), None]

    def dist(p):
        return np.linalg.norm(px(p)[:, :, None] - px(p)[:, None], axis=-1)

    np.testing.assert_allclose(dist(turned[:5]), dist(pts[:5]), atol=1e-3)  # a turn keeps every distance (in pixels)
    np.testing.assert_allclose(turned[:5, 0], pts[:5, 0], atol=1e-6)  # about the wrist
    np.testing.assert_array_equal(turned[..., 2], pts[..., 2])
    assert not np.allclose(turned[:5], pts[:5]) and np.isnan(turned[5]).all()
    again = augment_landmarks(pts, size, np.random.default_rng(1), 15.0, (0.9, 1.1), 0.1)
    np.testing.assert_array_equal(again, augment_landmarks(pts, size, np.random.default_rng(1), 15.0, (0.9, 1.1), 0.1))

    def angle(p):
        return np.arctan2(*(px(p[:5])[:, 9] - px(p[:5])[:, 0]).T[::-1])

    assert np.abs(np.rad2deg(angle(turned) - angle(pts))).max() <= 15.0 + 1e-3


def test_a_crop_is_the_hands_box_in_pixels_and_the_whole_image_without_a_hand():
    stored = np.array([[[0.4, 0.4], [0.6, 0.6]], [[0.0, 0.0], [0.1, 0.1]]] + [[[0.0, 0.0], [0.0, 0.0]]], np.float32)
    boxes = crop_boxes(stored, np.array([True, True, False]), 0.25)
    np.testing.assert_allclose(boxes[0], [0.35, 0.35, 0.65, 0.65], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [0.0, 0.0, 0.15, 0.15], atol=1e-6)  # moved inside
    np.testing.assert_array_equal(boxes[2], [0, 0, 1, 1])
    assert pixel_box(boxes[0], 100) == (35, 35, 65, 65)
    for box in boxes:
        x0, y0, x1, y1 = pixel_box(box, 37)
        assert x1 - x0 == y1 - y0 >= 1 and 0 <= x0 and x1 <= 37 and 0 <= y0 and y1 <= 37


def test_the_model_sees_the_crop_resized_to_R():
    from PIL import Image

    from study.datasets.images import model_pixels

    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
    box = np.array([0.25, 0.5, 0.75, 1.0], np.float32)
    got = model_pixels(img, 16, 16, box=box)
    want = np.asarray(Image.fromarray(img[32:64, 16:48]).resize((16, 16), Image.Resampling.BOX))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        model_pixels(img, 16, 16, box=np.array([0, 0, 1, 1], np.float32)), model_pixels(img, 16, 16)
    )


def test_an_image_without_a_hand_is_nothing_where_the_model_has_it_and_wrong_otherwise():
    from study.core.hand import no_hand
    from study.core.labels import NO_HAND, NO_HAND_NAME
    from study.stages.evaluate import score

    pred, found = np.array([0, 1, 2]), np.array([True, False, True])
    np.testing.assert_array_equal(no_hand(pred, found, [0, 1, 2, NOTHING]), [0, NOTHING, 2])
    np.testing.assert_array_equal(no_hand(pred, found, [0, 1, 2]), [0, NO_HAND, 2])
    s = score(np.array([0, 1, 2]), np.array([0, NO_HAND, 2]), 50, 0.95)
    assert s["accuracy"] == pytest.approx(2 / 3) and NO_HAND_NAME in s["confusion"]["labels"]
    assert s["report"]["B"]["recall"] == 0.0  # the image of B without a hand counts against B


SPLITS = {"train": ["A", "B", "nothing"], "validation": ["A", "B", "nothing"], "test": ["A", "B", "nothing"]}


def _landmark_unit(ctx, d: str, split: str, x: np.ndarray, y: np.ndarray, found: np.ndarray) -> None:
    """A hands unit and the landmark vectors made from it, as the hands and features stages write them."""
    fp = ctx.dataset_fingerprint(d)
    h = store.hand_files(ctx.cache_dir, fp, split).root
    h.mkdir(parents=True, exist_ok=True)
    np.savez(h / "hands.npz", **{f: np.zeros((len(y), 1), np.float32) for f in store.HANDS_FIELDS})
    mark_done(h / "unit.json", store.hands_spec(fp, split, ctx.preset.hands.tries), [h / "hands.npz"])
    unit = Unit(d, split, LANDMARKS_R, LANDMARKS_R, hand="landmarks")
    write_features(ctx, unit, x, y)
    out = store.features_dir(ctx, unit)
    np.save(out / "found.npy", found)
    mark_done(
        out / "unit.json",
        store.features_spec(ctx, unit),
        [out / f for f in ("feats.npy", "labels.npy", "found.npy")],
        images=len(y),
    )


@pytest.mark.slow
def test_the_landmark_classifier_learns_from_found_hands_only_and_is_scored_on_every_image(tmp_path):
    """Trained by the shared loop on the rows with a hand (the labels of the others never reach
    it), scored on every test image: those without a hand are predicted `nothing`."""
    from study.stages import evaluate, train

    preset = dataclasses.replace(
        SMOKE,
        few_shot=(),
        ablation=(),
        multi_source=False,
        augment=dataclasses.replace(SMOKE.augment, views=0),
        block5=dataclasses.replace(SMOKE.block5, resolutions=()),
        adapt=dataclasses.replace(SMOKE.adapt, methods=()),
        hands=dataclasses.replace(SMOKE.hands, crops=False, landmark_views=0),
        train=dataclasses.replace(SMOKE.train, epochs=40),
    )
    heads, records = [], []
    for scramble in (False, True):
        ctx = tiny_results(tmp_path / str(scramble), preset, {"asl_alphabet": SPLITS})
        rng = np.random.default_rng(0)
        for split in SPLITS:
            y = np.repeat([0, 1, NOTHING], 10)
            x = rng.normal(0, 0.1, (30, 63)).astype(np.float32) + np.eye(63, dtype=np.float32)[y % 63] * 3
            found = np.ones(30, bool)
            found[::5] = False  # a fifth of the images: no hand, their vectors zeros
            x[~found] = 0
            if scramble and split != "test":
                y = np.where(found, y, 1)  # what the images without a hand are labelled must not matter
            _landmark_unit(ctx, "asl_alphabet", split, x, y, found)
            write_features(ctx, Unit("asl_alphabet", split, 32, 32), rng.normal(size=(30, 512)), y)
        train.run_stage(ctx)
        heads.append(store.head_arrays(ctx, "asl_alphabet/landmarks", LANDMARKS_R, 0))
        todo = [e for e in ctx.plan.evaluations() if e.model == "asl_alphabet/landmarks"]
        assert [(e.dataset, e.split, e.r) for e in todo] == [("asl_alphabet", "test", 0)]
        evaluate.run_evaluations(ctx, todo)
        records.append(store.eval_records(ctx, "asl_alphabet/landmarks", LANDMARKS_R, "asl_alphabet", LANDMARKS_R)[0])
    for k in heads[0]:
        np.testing.assert_array_equal(heads[0][k], heads[1][k])
    pred = np.asarray(records[0]["y_pred"])
    assert (pred[::5] == NOTHING).all() and len(pred) == 30
    assert records[0]["accuracy"] > 0.5
