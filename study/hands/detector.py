"""MediaPipe's hand landmarks on a still image, from its two TFLite models, without MediaPipe.

The static-image path of MediaPipe's hand graph (mediapipe/modules/palm_detection and
hand_landmark, version 0.10.14), restated:

1. palm detection: the image letterboxed into a 192 x 192 square (black bars, values in
   [0, 1]); 2016 SSD anchors (strides 8, 16, 16, 16, two anchors per layer and place, of
   fixed size); each anchor's box and 7 palm keypoints decoded relative to it; scores
   sigmoid(clip(x, -100, 100)) above 0.5; weighted non-maximum suppression (IoU 0.3);
2. the hand's region: a square, rotated so that the wrist (keypoint 0) to the middle
   finger's knuckle (keypoint 2) points up, 2.6 times the palm box, moved half a box towards
   the fingers;
3. the landmark model on that region warped to 224 x 224 (values in [0, 1], edge pixels
   repeated outside the image): 21 landmarks (x, y in the region's pixels, z), the hand's
   presence and handedness; the landmarks mapped back into the image.

Coordinates follow OpenCV's, as MediaPipe's do: pixel i's centre is at i, a region's
corners map onto the output's corners, and sampling is bilinear without antialiasing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np

from study.core.errors import WeightsError
from study.core.hand import MODEL_FILES

# The two model files (names and sha256: study.core.hand.MODEL_FILES, which also name the cached
# landmarks), committed with their licence in study/hands/models (README.md there).
MODELS_DIR = Path(__file__).parent / "models"
WHEEL = "mediapipe==0.10.14"

PALM_SIZE, LANDMARK_SIZE = 192, 224
SCORE_THRESHOLD, IOU_THRESHOLD, PRESENCE_THRESHOLD = 0.5, 0.3, 0.5
ROI_SCALE, ROI_SHIFT_Y = 2.6, -0.5
Z_SCALE = 0.4  # MediaPipe's normalize_z for the hand landmark model
BORDER = "replicate"


def anchors() -> np.ndarray:
    """(2016, 2) anchor centres (x, y), normalised, in the order of the model's outputs."""
    out = []
    strides = [8, 16, 16, 16]
    i = 0
    while i < len(strides):  # layers of one stride share their grid: 2 anchors each per place
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = -(-PALM_SIZE // strides[i])
        per_place = 2 * (j - i)
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], -1)
        out.append(np.repeat(centres, per_place, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


ANCHORS = anchors()


# OpenCV's bilinear warp of a uint8 image places each sample on a 1/32-pixel grid
# (INTER_TAB_SIZE) and rounds the result to uint8; doing the same brings the landmarks from
# a median 0.34 px to 0.18 px of MediaPipe's on 35 real images.
SUBPIXEL = 32


def sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, border: str) -> np.ndarray:
    """Bilinear samples of an H x W x 3 uint8 image at OpenCV coordinates, as OpenCV's warp
    takes them (see SUBPIXEL); outside it, zero (`border="zero"`) or the nearest edge pixel
    (`"replicate"`)."""
    xs, ys = np.round(xs * SUBPIXEL) / SUBPIXEL, np.round(ys * SUBPIXEL) / SUBPIXEL
    return np.clip(np.round(_bilinear(image, xs, ys, border)), 0, 255)


def _bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, border: str) -> np.ndarray:
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]

    def at(yy, xx):
        if border == "replicate":
            return img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
        return np.where(inside, img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)

    return (at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx) * (1 - fy) + (
        at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    ) * fy


def warp(image: np.ndarray, cx: float, cy: float, side: float, rotation: float, size: int, border: str) -> np.ndarray:
    """The square of `side` pixels centred on (cx, cy), turned by `rotation`, as size x size."""
    u = np.arange(size, dtype=np.float64) / size - 0.5
    uu, vv = np.meshgrid(u * side, u * side)
    c, s = math.cos(rotation), math.sin(rotation)
    return sample(image, cx + c * uu - s * vv, cy + s * uu + c * vv, border)


@dataclasses.dataclass(frozen=True)
class Palm:
    score: float
    box: np.ndarray  # xmin, ymin, xmax, ymax, normalised to the image
    keypoints: np.ndarray  # 7 x 2, normalised to the image


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy

    def area(r):
        return (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])

    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def decode_palms(raw_boxes: np.ndarray, raw_scores: np.ndarray) -> list[Palm]:
    """Palms in the 192 x 192 input's normalised coordinates, best first, after weighted NMS."""
    scores = 1 / (1 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= SCORE_THRESHOLD)
    if not len(keep):
        return []
    r = raw_boxes.reshape(-1, 18)[keep] / PALM_SIZE
    a = ANCHORS[keep]
    xc, yc = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1)
    kps = r[:, 4:].reshape(-1, 7, 2) + a[:, None, :]
    scores = scores[keep]
    order = np.argsort(-scores, kind="stable")
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    palms = []
    remaining = np.arange(len(scores))
    while len(remaining):
        top = remaining[0]
        merged = _iou(boxes[top], boxes[remaining]) > IOU_THRESHOLD
        merged[0] = True  # the top itself, even if its box is empty
        cluster = remaining[merged]
        wts = scores[cluster][:, None]
        box = (boxes[cluster] * wts).sum(0) / wts.sum()
        kp = (kps[cluster] * wts[:, :, None]).sum(0) / wts.sum()
        palms.append(Palm(float(scores[top]), box, kp))
        remaining = remaining[~merged]
    return palms


@dataclasses.dataclass(frozen=True)
class Hand:
    landmarks: np.ndarray  # 21 x 3: x, y normalised to the image; z in units of the image width
    presence: float
    handedness: str  # MediaPipe's label, which assumes a mirrored (selfie) image
    handedness_score: float
    palm_score: float
    rect: tuple[float, float, float, float]  # centre x, y (pixels), side (pixels), rotation (radians)


def _normalize_radians(a: float) -> float:
    return a - 2 * math.pi * math.floor((a + math.pi) / (2 * math.pi))


def model_files(folder: Path | None = None) -> dict[str, Path]:
    """The two model files in `folder` (default: the package's), each checked against its
    sha256; WeightsError naming the file, both hashes and how to get the right one."""
    folder = Path(folder) if folder is not None else MODELS_DIR
    out = {}
    for role, (name, want) in MODEL_FILES.items():
        path = folder / name
        how = (
            f"they come inside the {WHEEL} wheel: `pip download {WHEEL} --no-deps -d /tmp/mp && unzip -j "
            f"/tmp/mp/mediapipe-*.whl 'mediapipe/modules/*/{name}' -d {folder}` (study/hands/models/README.md)"
        )
        if not path.is_file():
            raise WeightsError(f"the hand {role} model {path} is missing; {how}")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != want:
            raise WeightsError(
                f"the hand {role} model {path} is not the expected file (sha256 {got}, expected {want}); {how}"
            )
        out[role] = path
    return out


class HandLandmarker:
    """Both models in LiteRT interpreters (one thread each: the study runs images in parallel).
    `HandLandmarker.load()` checks the files first."""

    @classmethod
    def load(cls, folder: Path | None = None, threads: int = 1) -> "HandLandmarker":
        """A landmarker with the palm and landmark models from `folder` (the default model files if None)."""
        files = model_files(folder)
        return cls(str(files["palm"]), str(files["landmark"]), threads)

    def __init__(self, palm_model: str, landmark_model: str, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.palm = Interpreter(model_path=palm_model, num_threads=threads)
        self.landmark = Interpreter(model_path=landmark_model, num_threads=threads)
        for it in (self.palm, self.landmark):
            it.allocate_tensors()
        out = {d["name"]: d["index"] for d in self.palm.get_output_details()}
        self._palm_out = (out["Identity"], out["Identity_1"])
        out = {d["name"]: d["index"] for d in self.landmark.get_output_details()}
        self._lm_out = (out["Identity"], out["Identity_1"], out["Identity_2"])

    def _run(self, it, x: np.ndarray, outputs) -> list[np.ndarray]:
        it.set_tensor(it.get_input_details()[0]["index"], x[None].astype(np.float32))
        it.invoke()
        return [it.get_tensor(i)[0] for i in outputs]

    def palms(self, image: np.ndarray) -> list[Palm]:
        """Palms in the image's normalised coordinates, best first."""
        h, w = image.shape[:2]
        side = max(w, h)
        x = warp(image, w / 2, h / 2, side, 0.0, PALM_SIZE, "zero") / 255
        boxes, scores = self._run(self.palm, x, self._palm_out)
        pad_x, pad_y = (1 - w / side) / 2, (1 - h / side) / 2

        def unbox(p):
            return (p - [pad_x, pad_y]) / [1 - 2 * pad_x, 1 - 2 * pad_y]

        return [
            Palm(p.score, np.concatenate([unbox(p.box[:2]), unbox(p.box[2:])]), unbox(p.keypoints))
            for p in decode_palms(boxes, scores)
        ]

    @staticmethod
    def region(palm: Palm, w: int, h: int) -> tuple[float, float, float, float]:
        """The hand's square region in pixels (centre x, y, side, rotation) from its palm."""
        x0, y0 = palm.keypoints[0] * [w, h]
        x1, y1 = palm.keypoints[2] * [w, h]
        rotation = _normalize_radians(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
        bw, bh = (palm.box[2] - palm.box[0]) * w, (palm.box[3] - palm.box[1]) * h
        cx, cy = (palm.box[0] + palm.box[2]) / 2 * w, (palm.box[1] + palm.box[3]) / 2 * h
        cx += -bh * ROI_SHIFT_Y * math.sin(rotation)
        cy += bh * ROI_SHIFT_Y * math.cos(rotation)
        return float(cx), float(cy), float(max(bw, bh) * ROI_SCALE), float(rotation)

    def hand(self, image: np.ndarray, palm: Palm) -> Hand:
        """The hand's 21 landmarks (image-normalised), presence and handedness in the region of `palm`."""
        h, w = image.shape[:2]
        cx, cy, side, rotation = self.region(palm, w, h)
        x = warp(image, cx, cy, side, rotation, LANDMARK_SIZE, BORDER) / 255
        raw, presence, handed = self._run(self.landmark, x, self._lm_out)
        lm = raw.reshape(21, 3) / LANDMARK_SIZE
        u, v = lm[:, 0] - 0.5, lm[:, 1] - 0.5
        c, s = math.cos(rotation), math.sin(rotation)
        px = (c * u - s * v) * side + cx
        py = (s * u + c * v) * side + cy
        landmarks = np.stack([px / w, py / h, lm[:, 2] / Z_SCALE * side / w], -1)
        p_left = float(handed.reshape(-1)[0])
        label, score = ("Left", p_left) if p_left >= 0.5 else ("Right", 1 - p_left)
        return Hand(landmarks, float(presence.reshape(-1)[0]), label, score, palm.score, (cx, cy, side, rotation))

    def __call__(self, image: np.ndarray) -> Hand | None:
        """The best palm's hand, if a palm is found and the landmark model says a hand is there."""
        palms = self.palms(image)
        if not palms:
            return None
        hand = self.hand(image, palms[0])
        return hand if hand.presence >= PRESENCE_THRESHOLD else None
