"""The study's configuration: frozen dataclasses, and the presets, the only place numbers live.

A preset is derived from the `cpu` one with `dataclasses.replace`, so that the differences
between presets are exactly what each says it changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from study.core.errors import ConfigError

# Five 2x2 poolings: VGG16 needs at least 32x32 inputs (study.network.model uses it too).
MIN_MODEL_RESOLUTION = 32


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How train, validation and test are cut from each class (docs/method.md).

    Frame-numbered datasets are split by rank of frame number into `max_blocks` chunks spread
    over the recording; each chunk is cut into contiguous train | validation | test runs in the
    proportions of `fractions`. Train and validation images within `guard_frames` frames of a
    test image, and train images within `guard_frames` of a validation image, are left out.
    """

    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    # Chunks per class over the whole recording: test images come from five places in the
    # video (the light changes over it), at the cost of about 3 guard bands per chunk.
    max_blocks: int = 5
    # A class with fewer images gets fewer chunks, so that every chunk keeps test images.
    min_images_per_block: int = 40
    # No train or validation image within this many frames of a test image (same class).
    guard_frames: int = 10
    # Share of an official train split carved out as validation (Lexset), by file-name hash.
    validation_fraction: float = 0.10


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a head is trained on cached features (study.stages.train)."""

    head: str = "mlp"  # "mlp" (default) or "seed", the original student study's head
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # Early stopping: stop after this many epochs without a lower validation loss; the
    # parameters of the best epoch are kept.
    patience: int = 8
    # Horizontal-flip augmentation. Off: flipping changes the signing hand, which matters in
    # sign language.
    flip: bool = False
    # Fine-tune block 5 with the head, on images, instead of training the head on cached
    # features (study.training.finetune): the image-level mode, for a GPU, where the model may see a
    # new random view of an image each step. Early stopping and checkpoints as for heads.
    # (Preset.block5 fine-tunes block 5 from cached block-4 maps, on any machine.)
    finetune: bool = False


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmented views of the training images (study.datasets.augment), each cached as a features unit.

    Heads trained on them (models `<dataset>/aug<views>`) see, each epoch, every training
    image once, as its original or one of its `views` augmented views, drawn per (seed,
    epoch). The transforms imitate what separates the datasets' photos (framing, camera
    angle, light, colour balance, focus), never what separates the letters: no horizontal
    flip (it swaps the signing hand, TrainConfig.flip is its own switch) and rotations small
    enough to keep the orientation that tells some letters apart (H from U, G from Q).
    """

    # Augmented views per training image; 0 turns augmentation off. Budget: one VGG16 forward
    # pass per view and image (on 2 cores, 4 views of the cpu preset's 8,785 training images
    # at 64 px take about 6 minutes; at 128 px, four times the pixels, so cpu augments at 64).
    views: int = 4
    resolutions: tuple[int, ...] = (64,)  # the model resolutions R that get augmented models
    crop_scale: tuple[float, float] = (0.7, 1.0)  # random resized crop: share of the image side
    max_rotation: float = 10.0  # degrees, uniform in [-max, max]
    brightness: float = 0.25  # added to [0, 1] pixel values, uniform in [-b, b]
    contrast: tuple[float, float] = (0.7, 1.3)
    saturation: tuple[float, float] = (0.6, 1.4)
    hue: float = 0.05  # shift, as a fraction of the hue circle, uniform in [-h, h]
    grayscale: float = 0.1  # probability
    blur: float = 0.3  # probability of a Gaussian blur, sigma uniform in blur_sigma
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # in pixels at the model resolution


@dataclasses.dataclass(frozen=True)
class Block5Config:
    """Fine-tuning VGG16's block 5 with the head, on cached block-4 maps (study.stages.train).

    Blocks 1-4 stay frozen, so their output is computed once, in the features pass (the
    features units at these resolutions also keep the block-4 maps), and each step runs only
    block 5 and the head: about 9% of VGG16's multiply-adds forward, 27% with the backward
    pass. Block 5's convolutions take study.network.conv's paths, Winograd on CPU (F(4x4) on
    the 4x4 maps of R = 64: 4x fewer multiplications forward and backward), and the batch is
    sized for them: a Winograd product is one matrix product per tap, whose rows are the
    batch's tiles (one per image at 4x4), so it reaches the matrix-multiply rate only with
    a few hundred rows (measured on 2 cores at R = 64, training images/s: matrix-product path
    159-164 at batches 256-512, F(4x4) 118 at batch 64, 252-302 at 256, 335 at 512; `bench`
    measures it). 256 keeps 23 steps per epoch on the cpu preset's asl_alphabet. The
    learning rate follows the batch by Adam's square-root rule (Malladi et al., 2022): it was
    1e-4 at batch 64. The head starts from the frozen baseline head of the same dataset, R
    and seed, so that the gain is block 5's alone.
    """

    resolutions: tuple[int, ...] = (64,)  # model resolutions R that get `<dataset>/ft5` models
    epochs: int = 12
    batch_size: int = 256
    # Small: block 5 holds ImageNet features; a large step would erase them before the head adapts.
    learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    patience: int = 3


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """Adaptation without target labels (study.training.adapt; docs/method.md, the remedies:
    adapted models): for every ordered pair of datasets, a head trained on the source's
    labelled features and the target's unlabelled training features, never a target label.
    Scored on the target.

    std: each domain's features standardised with its own mean and standard deviation (the
    target's from its unlabelled training images). coral: the source's features whitened and
    re-coloured with the target's covariance, and moved to its mean (Sun et al., 2016), each
    covariance shrunk towards its mean variance by `coral_shrink` so that it can be inverted.
    self: the source's model labels the target's training images; those it gives a
    probability of at least `confidence` join the source's training split as pseudo-labels,
    a new head is trained, and so on for `rounds` rounds (starting from the frozen model of
    the same source, R and seed).
    """

    methods: tuple[str, ...] = ("std", "coral", "self")
    coral_shrink: float = 0.01
    rounds: int = 3
    confidence: float = 0.9


@dataclasses.dataclass(frozen=True)
class HandsConfig:
    """Hand landmarks of every image (study.hands, the `hands` stage; docs/method.md, the hands).

    MediaPipe's detector misses dark hands against a bright window and hands cut by the
    frame. A miss is tried again on changed pixels, in this order, until a hand is found:
    each try is (name, black border on every side as a fraction of the image's longer side,
    gamma of the pixel values, where < 1 brightens). Measured on 100 real images of each
    dataset: the plain detector finds 81% of asl_alphabet's hands and 89% of asl-photos';
    with these tries, 96% and 100%.
    """

    tries: tuple[tuple[str, float, float], ...] = (
        ("plain", 0.0, 1.0),
        ("border", 0.25, 1.0),
        ("bright", 0.0, 0.5),
        ("border+bright", 0.25, 0.5),
        ("wide border", 0.5, 1.0),
    )
    # Images per job of the workers, and per part file of an unfinished unit (what a resumed
    # run keeps).
    chunk: int = 64
    # The hand's box: the square around its landmarks, widened by this fraction of its side on
    # every side, moved back inside the image where it leaves it (Grad-CAM's share of heat on
    # the hand is measured in it, and the hand crops are cut by it).
    margin: float = 0.2
    # Hand crops as a view of every image (models `<dataset>/hand`): features units of each
    # split's crops at every R and r, as for the whole images. An image with no hand found is
    # used whole (and counted in datasets.json's misses).
    crops: bool = True
    # The landmark classifier (models `<dataset>/landmarks`): a head on the landmark vectors;
    # with hand crops also `<dataset>/hand+landmarks`, both views side by side.
    landmarks: bool = True
    # Landmark augmentation (models `<dataset>/landmarks/aug<views>`; 0: none): views of every
    # training hand, each turned about the wrist by up to `landmark_rotation` degrees, each
    # axis stretched by a factor in `landmark_stretch` and sheared by up to `landmark_shear`,
    # drawn per view (study.core.hand.augment_landmarks). Each epoch shows every hand once, as
    # itself or one of its views, drawn per (seed, epoch), as for augmented images.
    landmark_views: int = 8
    landmark_rotation: float = 15.0
    landmark_stretch: tuple[float, float] = (0.9, 1.1)
    landmark_shear: float = 0.1


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How models are scored (study.stages.evaluate)."""

    bootstrap: int = 1000  # resamples of the test images for the 95% intervals
    confidence: float = 0.95
    # Splits every model is scored on, where the dataset has them.
    splits: tuple[str, ...] = ("test", "kaggle_test")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Everything a run of the study depends on, apart from the data it is given."""

    name: str
    # Datasets the preset uses, by name (study.datasets.DATASETS); missing ones are reported.
    datasets: tuple[str, ...]
    # Images are decoded, centre-cropped to a square and resized once, at prepare time, to this
    # size; it is the largest model resolution, so no model input is ever upsampled from it.
    storage_size: int
    # Model input resolutions R (one model per R, dataset and seed).
    train_resolutions: tuple[int, ...]
    # Test-time degradations r: test images area-downsampled to r x r and resized back to R.
    eval_resolutions: tuple[int, ...]
    seeds: tuple[int, ...]
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    # The leakage ablation: for these datasets a twin model is trained and scored on a random,
    # frame-blind split of the same images (same sizes, resolution and seeds), to show how
    # much a random split of video frames inflates accuracy.
    ablation: tuple[str, ...] = ("asl_alphabet",)
    # Multi-source models (study.core.names): one head on the union of the datasets' training
    # splits, labels restricted to those they all have; with three or more datasets also
    # every leave-one-dataset-out union.
    multi_source: bool = True
    # Few-shot models: for every ordered pair (source, target), the source's training split
    # plus k labelled images per class of the target's, spread over its recording. k = 0 is
    # the source's own model and k = all the pair's multi-source model, so neither is repeated.
    few_shot: tuple[int, ...] = (1, 2, 5, 10, 25)
    # Augmented views of the training images and the heads trained on them (`<dataset>/augK`).
    augment: AugmentConfig = AugmentConfig()
    # Block 5 fine-tuned on cached block-4 maps (`<dataset>/ft5`).
    block5: Block5Config = Block5Config()
    # Adaptation without target labels (`<source>+<method>(<target>)` models).
    adapt: AdaptConfig = AdaptConfig()
    # Hand landmarks of every image (the `hands` stage).
    hands: HandsConfig = HandsConfig()
    # Images per forward pass when extracting features (rounded up to a multiple of the
    # number of devices); a fixed shape, so each resolution compiles once.
    feature_batch: int = 32
    # Lexset's `Blank` (background, no hand) counts as `nothing`; when False, Blank images are
    # left out of the dataset (and listed as such).
    blank_as_nothing: bool = True
    # The smoke preset writes generated archives into the data directory when they are absent.
    generated_data: bool = False
    # Where `--data-dir` points when it is not given (relative to the working directory).
    default_data_dir: str = "data"

    def __post_init__(self):
        for r in self.train_resolutions:
            if not MIN_MODEL_RESOLUTION <= r <= self.storage_size:
                raise ConfigError(
                    f"{self.name}: model resolution {r} must lie in [{MIN_MODEL_RESOLUTION}, storage size "
                    f"{self.storage_size}]"
                )
        for r in self.augment.resolutions + self.block5.resolutions:
            if r not in self.train_resolutions:
                raise ConfigError(
                    f"{self.name}: remedy resolution {r} is not a model resolution {self.train_resolutions}"
                )
        for r in self.eval_resolutions:
            if not 1 <= r <= self.storage_size:
                raise ConfigError(f"{self.name}: eval resolution {r} must lie in [1, storage size {self.storage_size}]")

    def restricted(self, datasets: list[str] | None = None, resolutions: list[int] | None = None) -> "Preset":
        """The same preset run on some of its datasets or model resolutions only."""
        for d in datasets or ():
            if d not in self.datasets:
                raise ConfigError(
                    f"unknown dataset {d!r} for preset {self.name}; valid datasets: {', '.join(self.datasets)}"
                )
        for r in resolutions or ():
            if r not in self.train_resolutions:
                valid = ", ".join(map(str, self.train_resolutions))
                raise ConfigError(f"unknown resolution {r} for preset {self.name}; valid resolutions: {valid}")

        def keep(rs):
            return tuple(r for r in rs if not resolutions or r in resolutions)

        return dataclasses.replace(
            self,
            datasets=tuple(d for d in self.datasets if not datasets or d in datasets),
            train_resolutions=keep(self.train_resolutions),
            augment=dataclasses.replace(self.augment, resolutions=keep(self.augment.resolutions)),
            block5=dataclasses.replace(self.block5, resolutions=keep(self.block5.resolutions)),
        )

    def eval_resolutions_for(self, R: int) -> list[int]:
        """The degradations r that a model at resolution R is scored at (r <= R), R first."""
        return [R] + sorted((r for r in self.eval_resolutions if r < R), reverse=True)

    def to_dict(self) -> dict[str, Any]:
        """The preset as a plain dict (dataclasses.asdict), nested configs included."""
        return dataclasses.asdict(self)

    def fingerprint(self, *fields: str) -> str:
        """Short sha256 of the named fields (all fields if none), for result provenance."""
        d = self.to_dict()
        if fields:
            d = {k: d[k] for k in fields}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# The study on the real subsets in ../shared/data (asl_alphabet, asl_photos; Lexset when present),
# on 2 CPU cores: `all` took 112 minutes from scratch (every model trained, nothing else running)
# in its last run on an AMD EPYC without AVX-512 (hands 6.9; features 67.2 with Winograd
# convolutions, of which 25.4 for the hand crops at every R and r, 12.4 for the augmented views
# and 2.7 for the trivial-cue units; train 30.4, block 5 16.9 of it; evaluate 6.4; report 0.6),
# over issue 18's 90-minute budget; augmentation, block 5 and the trivial cues run at R = 64 only.
# The study of record (RECORD below).
CPU = Preset(
    name="cpu",
    datasets=("asl_alphabet", "synthetic_asl_alphabet", "asl_photos"),
    storage_size=128,
    train_resolutions=(64, 128),
    eval_resolutions=(128, 64, 32, 16),
    seeds=(0, 1, 2),
)

# The full study: the full Kaggle datasets (and any folder datasets present) at up to 224 px,
# meant for a GPU. Not yet the study of record, which is RECORD = "cpu" (below) until this
# preset has run on the full data.
PAPER = dataclasses.replace(
    CPU,
    name="paper",
    storage_size=224,
    train_resolutions=(224, 64),
    eval_resolutions=(224, 112, 64, 32),
    augment=dataclasses.replace(AugmentConfig(), views=8, resolutions=(224, 64)),
    block5=dataclasses.replace(Block5Config(), resolutions=(224, 64)),
    feature_batch=256,
)

# Generated images in both Kaggle layouts and a folder dataset, 32x32, a few images per class:
# the tests use it, and `all` runs in about 5 minutes on 2 CPU cores (hands 23 s, train 2 minutes
# with 18 adapted heads, evaluate 1.5).
SMOKE = dataclasses.replace(
    CPU,
    name="smoke",
    storage_size=32,
    train_resolutions=(32,),
    eval_resolutions=(32, 16),
    seeds=(0,),
    few_shot=(2,),
    augment=dataclasses.replace(AugmentConfig(), views=2, resolutions=(32,)),
    block5=dataclasses.replace(Block5Config(), resolutions=(32,), epochs=2),
    # Generated images hold no hand, so every try would run on almost every image (about 30 ms
    # each): the plain try alone (tests/test_hands.py runs the others on real images).
    hands=dataclasses.replace(HandsConfig(), tries=HandsConfig.tries[:1]),
    train=dataclasses.replace(TrainConfig(), epochs=2, batch_size=64),
    # Heads of 2 epochs on generated images are rarely 90% sure: a low bar, so that the
    # pseudo-labelled rows are exercised.
    adapt=dataclasses.replace(AdaptConfig(), rounds=2, confidence=0.2),
    eval=dataclasses.replace(EvalConfig(), bootstrap=200),
    feature_batch=16,
    generated_data=True,
    default_data_dir="data/smoke",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (SMOKE, CPU, PAPER)}

# The study of record: the preset whose results are committed in results/<RECORD>/ and whose
# report alone writes the repository's paper/ (every other preset, or the record run into
# another --out, writes its paper under its results folder). `python -m study.run all` with
# no flags runs it. Becomes "paper" once that preset has run on the full data.
RECORD = "cpu"


def get_preset(name: str) -> Preset:
    """The preset called `name`; an error lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
