"""The hand's geometry from its 21 landmarks (study.hands finds them): where it lies in a
stored image, the box of its crop, and the landmark classifier's input. Pure numpy.

Landmarks come as the hands stage caches them: x, y normalised to the upright original
image, z in units of its width, NaN rows where no hand was found (study.hands.landmarks).
"""

from __future__ import annotations

import numpy as np

from study.core.labels import CANONICAL, NO_HAND

# MediaPipe's two model files (study.hands.detector runs them) and their sha256, which also
# name the cached landmarks (study.core.store.hands_dir).
MODEL_FILES = {
    "palm": ("palm_detection_full.tflite", "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    "landmark": ("hand_landmark_full.tflite", "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
}
WRIST, MIDDLE_MCP = 0, 9  # MediaPipe's landmark indices
LANDMARK_DIM = 63  # a landmark vector: 21 landmarks, x, y, z (landmark_vectors)


def to_stored(landmarks: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Landmarks (N x 21 x 2+, normalised to the originals of sizes N x (w, h)) in the
    coordinates of the stored images, normalised: the centre square of each original
    (study.datasets.images.square_resize)."""
    w, h = size[:, 0:1].astype(np.float64), size[:, 1:2].astype(np.float64)
    s = np.minimum(w, h)
    x = (landmarks[..., 0] * w - (w - s) // 2) / s
    y = (landmarks[..., 1] * h - (h - s) // 2) / s
    return np.stack([x, y], -1).astype(np.float32)


def hand_box(points: np.ndarray, margin: float) -> np.ndarray:
    """The hand's box (x0, y0, x1, y1, normalised) from its landmarks (21 x 2, normalised to the
    same image): the square around them, each side widened by `margin` times the square's
    side, moved back inside the image where it leaves it (at most the whole image)."""
    lo, hi = points.min(0), points.max(0)
    side = min(1.0, float((hi - lo).max()) * (1 + 2 * margin))
    centre = np.clip((lo + hi) / 2, side / 2, 1 - side / 2)
    return np.concatenate([centre - side / 2, centre + side / 2])


def crop_boxes(stored: np.ndarray, found: np.ndarray, margin: float) -> np.ndarray:
    """Each image's crop (N x 4 float32: x0, y0, x1, y1, normalised to the stored image): its
    hand's box (`hand_box`), the whole image where no hand was found (`found` False)."""
    out = np.tile(np.array([0, 0, 1, 1], np.float32), (len(found), 1))
    for i in np.flatnonzero(found):
        out[i] = hand_box(stored[i], margin)
    return out


def pixel_box(box: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """A normalised square box in pixels of a size x size image: a square of at least one
    pixel, inside the image."""
    side = int(min(size, max(1, round(float(box[2] - box[0]) * size))))
    left = int(np.clip(round(float(box[0]) * size), 0, size - side))
    top = int(np.clip(round(float(box[1]) * size), 0, size - side))
    return left, top, left + side, top + side


def landmark_vectors(landmarks: np.ndarray, left: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The landmark classifier's input (N x 63 float32): each hand's landmarks in pixels of its
    original, relative to the wrist, divided by the wrist's distance to the middle finger's
    knuckle (x, y; the palm's length, which no letter changes much), z alike, and mirrored
    to a right hand (x negated) where the handedness score says left (> 0.5). Zeros where no
    hand was found (NaN landmarks): the models never train on those rows, and scoring
    predicts `nothing` or counts them wrong (study.stages.evaluate)."""
    w = size[:, 0:1].astype(np.float64)
    h = size[:, 1:2].astype(np.float64)
    p = landmarks.astype(np.float64) * np.stack([w, h, w], -1)  # N x 21 x 3, pixels
    p = p - p[:, WRIST : WRIST + 1]
    scale = np.linalg.norm(p[:, MIDDLE_MCP, :2], axis=-1)
    p = p / np.where(scale > 0, scale, 1.0)[:, None, None]
    p[..., 0] *= np.where(np.nan_to_num(left) > 0.5, -1.0, 1.0)[:, None]
    return np.nan_to_num(p.reshape(len(p), -1), nan=0.0).astype(np.float32)


def augment_landmarks(
    landmarks: np.ndarray,
    size: np.ndarray,
    rng: np.random.Generator,
    rotation: float,
    stretch: tuple[float, float],
    shear: float,
) -> np.ndarray:
    """A view of each hand (landmarks N x 21 x 3 as cached, originals of sizes N x (w, h)): in
    the original's pixels, turned about the wrist by an angle uniform in [-rotation, rotation]
    degrees, x and y stretched by factors uniform in `stretch`, sheared (x += k y, k uniform
    in [-shear, shear]); z as it was. Returned in the cached form; NaN rows stay NaN."""
    n = len(landmarks)
    theta = np.deg2rad(rng.uniform(-rotation, rotation, n))
    sx, sy = rng.uniform(*stretch, n), rng.uniform(*stretch, n)
    k = rng.uniform(-shear, shear, n)
    c, s = np.cos(theta), np.sin(theta)
    # A = rotation @ stretch @ shear, per hand (N x 2 x 2)
    a = np.stack([np.stack([c * sx, c * sx * k - s * sy], -1), np.stack([s * sx, s * sx * k + c * sy], -1)], -2)
    wh = size[:, None, :2].astype(np.float64)
    p = landmarks[..., :2].astype(np.float64) * wh
    wrist = p[:, WRIST : WRIST + 1]
    moved = np.einsum("nij,nkj->nki", a, p - wrist) + wrist
    out = landmarks.astype(np.float64).copy()
    out[..., :2] = moved / wh
    return out.astype(np.float32)


def no_hand(pred: np.ndarray, found: np.ndarray, choose: list[int]) -> np.ndarray:
    """A landmark model's predictions (docs/method.md, the hands: the landmark classifier): where
    no hand was found, `nothing` if the model chooses among it (that is what the class means),
    otherwise NO_HAND (wrong)."""
    nothing = CANONICAL.index("nothing")
    return np.where(found, pred, nothing if nothing in choose else NO_HAND)
