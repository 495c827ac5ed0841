"""Model names: what a model saw, said by its name (docs/method.md), and the preset's list.

    asl_alphabet                      trained on one dataset's training split
    asl_alphabet+asl_photos           multi-source: the union of several datasets' training
                                      splits, labels restricted to those they all have
    asl_alphabet+5shot(asl_photos)    few-shot: a source's training split plus k labelled
                                      images per class of a target's training split
    asl_alphabet+coral(asl_photos)    adapted without target labels: the source's training
                                      split and the target's unlabelled training images;
                                      std (each domain standardised with its own statistics),
                                      coral (source features re-coloured with the target's
                                      covariance) or self (self-training on pseudo-labels)
    asl_alphabet+random               the leakage ablation: the same images split at random
    asl_alphabet/aug4                 a head trained on the original and 4 augmented views of
                                      each training image (study.datasets.augment)
    asl_alphabet/ft5                  block 5 fine-tuned with the head, on cached block-4 maps
    asl_alphabet/hand                 a head on the hand crops of the images (the square around
                                      the hand's landmarks; an image with no hand found whole),
                                      trained and scored on crops
    asl_alphabet/landmarks            the landmark classifier: a head on the 21 hand landmarks
                                      (study.core.hand.landmark_vectors), at R = 0: it sees no
                                      image at a model resolution (LANDMARKS_R)
    asl_alphabet/landmarks/aug8       the landmark classifier trained on the landmarks and 8
                                      augmented views of each training hand (turned, stretched,
                                      sheared: study.core.hand.augment_landmarks)
    asl_alphabet/hand+landmarks       both views at once: the hand crop's features and the
                                      landmark vector side by side, at each R

A model's folder is its name with "/" written "-" (`folder`). Pure: the report (which never
imports jax) and the stages share these rules.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

RANDOM = "+random"
FT5 = "ft5"
HAND, LANDMARKS, BOTH = "hand", "landmarks", "hand+landmarks"
# A landmark model's R in names, folders and the table: landmarks are found on the archive's
# original image, so the model has no model resolution, and is scored at r = 0 only.
LANDMARKS_R = 0
_REMEDY = re.compile(
    r"^(?P<source>[a-z0-9_]+)/(?P<remedy>aug[1-9]\d*|ft5|hand|landmarks(?:/aug[1-9]\d*)?|hand\+landmarks)$"
)
_SHOT = re.compile(r"^(?P<source>[a-z0-9_]+)\+(?P<k>\d+)shot\((?P<target>[a-z0-9_]+)\)$")
# Adaptation without target labels (study.training.adapt), what each name says.
ADAPTATIONS = {"std": "standardised per domain", "coral": "CORAL", "self": "self-training"}
_ADAPT = re.compile(r"^(?P<source>[a-z0-9_]+)\+(?P<adapt>" + "|".join(ADAPTATIONS) + r")\((?P<target>[a-z0-9_]+)\)$")


@dataclasses.dataclass(frozen=True)
class Model:
    """What a model was trained on."""

    sources: tuple[str, ...]  # datasets whose whole training split it saw
    target: str = ""  # few-shot: the dataset k images per class were drawn from; adapted: whose
    k: int = 0  # unlabelled training images were used
    adapt: str = ""  # one of ADAPTATIONS
    random: bool = False  # the leakage ablation's random split of sources[0]
    # "aug<K>", "ft5", "hand", "landmarks", "landmarks/aug<K>" or "hand+landmarks", applied to the
    # single dataset sources[0]
    remedy: str = ""

    @property
    def kind(self) -> str:
        """The model's kind in words: single, multi-source, few-shot, adapted, ablation, or its remedy's kind."""
        if self.remedy:
            if self.remedy.startswith(LANDMARKS):
                return "landmarks"
            return {FT5: "fine-tuned", HAND: "hand crop", BOTH: "both views"}.get(self.remedy, "augmented")
        if self.random:
            return "ablation"
        if self.adapt:
            return "adapted"
        if self.target:
            return "few-shot"
        return "multi-source" if len(self.sources) > 1 else "single"

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset whose labels it was trained on (not an adapted model's target: it saw
        no target label)."""
        return self.sources + ((self.target,) if self.target and not self.adapt else ())

    @property
    def views(self) -> int:
        """Augmented views per training image (0 unless an augmented model)."""
        return int(self.remedy.removeprefix("aug")) if self.remedy.startswith("aug") else 0

    @property
    def landmark_views(self) -> int:
        """Augmented views per training hand of a landmark model (0 unless `<dataset>/landmarks/aug<K>`)."""
        return int(self.remedy.removeprefix(f"{LANDMARKS}/aug")) if self.remedy.startswith(f"{LANDMARKS}/aug") else 0

    @property
    def input(self) -> str:
        """What of an image the model sees: "" the whole image, "crop" its hand crop,
        "landmarks" its hand landmarks, "both" the crop's features and the landmarks side by
        side (study.core.plan.Unit.hand; study.core.store.load_view)."""
        if self.remedy.startswith(LANDMARKS):
            return "landmarks"
        return {HAND: "crop", BOTH: "both"}.get(self.remedy, "")

    def __str__(self) -> str:
        if self.remedy:
            return f"{self.sources[0]}/{self.remedy}"
        if self.random:
            return self.sources[0] + RANDOM
        if self.adapt:
            return f"{self.sources[0]}+{self.adapt}({self.target})"
        if self.target:
            return f"{self.sources[0]}+{self.k}shot({self.target})"
        return "+".join(self.sources)


def parse(name: str) -> Model:
    """The Model a name stands for (the inverse of str(Model))."""
    m = _REMEDY.match(name)
    if m:
        return Model((m["source"],), remedy=m["remedy"])
    if "/" in name:
        raise ValueError(f"not a model name: {name!r}")
    m = _SHOT.match(name)
    if m:
        return Model((m["source"],), m["target"], int(m["k"]))
    m = _ADAPT.match(name)
    if m:
        return Model((m["source"],), m["target"], adapt=m["adapt"])
    if name.endswith(RANDOM):
        return Model((name.removesuffix(RANDOM),), random=True)
    return Model(tuple(name.split("+")))


def folder(name: str, R: int) -> str:
    """The folder of a model (under models/ and eval/): its name at R, "/" written "-"."""
    return f"{name.replace('/', '-')}@{R}"


def remedies(preset, R: int) -> list[str]:
    """The remedies a preset applies to each single-dataset model at resolution R (hand crops
    where the preset asks for them; the landmark classifier is planned apart, at LANDMARKS_R)."""
    if preset.train.finetune:  # the image-level mode trains single-dataset models only
        return []
    out = [f"aug{preset.augment.views}"] if preset.augment.views and R in preset.augment.resolutions else []
    out += [FT5] if R in preset.block5.resolutions else []
    out += [HAND] if preset.hands.crops else []
    return out + ([BOTH] if preset.hands.crops and preset.hands.landmarks else [])


def preset_models(preset, labels: dict[str, set[str]], with_hands: list[str] | None = None) -> list[tuple[str, int]]:
    """(name, R) of every model of a preset (study.core.config.Preset), given the labels of each
    dataset that has train and validation splits: at each R, the models of `model_names`,
    then the remedies of each single-dataset model; last, where the preset has landmark
    models, `<dataset>/landmarks` at LANDMARKS_R for each dataset of `with_hands` (default:
    all), those with a hand found in their training and validation images."""
    names = model_names(
        labels,
        multi_source=preset.multi_source,
        few_shot=preset.few_shot,
        ablation=preset.ablation,
        finetune=preset.train.finetune,
        adapt=preset.adapt.methods,
    )
    out = [
        (n, R)
        for R in preset.train_resolutions
        for n in names + [f"{d}/{x}" for x in remedies(preset, R) for d in labels]
    ]
    if preset.hands.landmarks and not preset.train.finetune:
        views = [f"/aug{preset.hands.landmark_views}"] if preset.hands.landmark_views else []
        out += [
            (f"{d}/{LANDMARKS}{v}", LANDMARKS_R)
            for v in ["", *views]
            for d in labels
            if with_hands is None or d in with_hands
        ]
    return out


def model_names(
    labels: dict[str, set[str]],
    *,
    multi_source: bool,
    few_shot: tuple[int, ...],
    ablation: tuple[str, ...],
    finetune: bool = False,
    adapt: tuple[str, ...] = (),
) -> list[str]:
    """The models of a preset, given the labels of each dataset that has train and validation
    splits (in the preset's order), in table order: single-dataset models, multi-source models
    (the union of all, and with three or more datasets every leave-one-dataset-out union),
    few-shot models for every ordered pair and k, adapted models for every ordered pair and
    method of `adapt`, and the leakage ablation. Datasets that
    share no label make no model together (`skipped` lists them). Fine-tuning trains
    single-dataset models only."""
    return _models(labels, multi_source, few_shot, ablation, finetune, adapt)[0]


def skipped(labels: dict[str, set[str]], *, multi_source: bool, few_shot: tuple[int, ...]) -> list[str]:
    """The multi-source and few-shot models left out because their datasets share no label."""
    return _models(labels, multi_source, few_shot, (), False)[1]


def _models(labels, multi_source, few_shot, ablation, finetune, adapt=()) -> tuple[list[str], list[str]]:
    trainable = list(labels)
    names, left_out = list(trainable), []
    if finetune:
        return names, left_out

    def shared(ds):
        return set.intersection(*(set(labels[d]) for d in ds))

    combined = []
    if multi_source and len(trainable) >= 2:
        unions = [tuple(trainable)]
        if len(trainable) >= 3:
            unions += list(itertools.combinations(trainable, len(trainable) - 1))
        combined += [(u, "+".join(u)) for u in unions]
    combined += [((s, t), str(Model((s,), t, k))) for s, t in itertools.permutations(trainable, 2) for k in few_shot]
    combined += [((s, t), str(Model((s,), t, adapt=a))) for s, t in itertools.permutations(trainable, 2) for a in adapt]
    for ds, name in combined:
        (names if shared(ds) else left_out).append(name)
    names += [n + RANDOM for n in ablation if n in trainable]
    return names, left_out


def dataset_pairs(labels: dict[str, set[str]]) -> list[tuple[str, str, list[str]]]:
    """Every pair of datasets (in the given order) with the labels they share; pairs sharing
    none are left out. Used by the domain-separability diagnostic and by the report."""
    names = list(labels)
    return [
        (a, b, sorted(set(labels[a]) & set(labels[b])))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if set(labels[a]) & set(labels[b])
    ]


def eval_name(eval_ds: str, split: str) -> str:
    """The table's eval_dataset: the dataset for its test split, dataset:split otherwise."""
    return eval_ds if split == "test" else f"{eval_ds}:{split}"


# The name of a scored folder's results (`score --name`, study.core.store.ScoreFiles): a folder
# name on every system, never one of the study's datasets. A name derived from the folder's own
# follows the same rule: lower-cased, every other run of characters made "_".
FOLDER_NAME_RULE = "lower-case letters, digits, - and _, starting with a letter or digit"
_FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def folder_results_name(folder: str, given: str | None = None) -> str | None:
    """The results name of a folder of photos: `given` if it follows FOLDER_NAME_RULE (None if
    it does not), else the folder's name made to follow it ("photos" if nothing is left)."""
    if given is not None:
        return given if _FOLDER_NAME.fullmatch(given) else None
    return re.sub(r"[^a-z0-9_-]+", "_", folder.lower()).strip("_-") or "photos"
