"""The plan of the work: from a preset and the datasets prepared, every unit the study needs.

Feature units, models, evaluations, separability pairs and the Grad-CAM sample are worked
out here and nowhere else; the stages (features, train, evaluate, score), the diagnostics and
the report take their lists from a `Plan`, and ask study.core.store where each unit lives.
Pure: no jax, no TFDS, no file is read (the prepared datasets come in as the `datasets`
part of `datasets.json`), so the report, which never imports jax, plans exactly as the
stages do. Orders are fixed (preset order, then split, then resolution): the table's rows
follow them.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Any, Iterable, NamedTuple

import numpy as np

from study.core.config import Preset
from study.core.labels import label_index
from study.core.names import FT5, LANDMARKS_R, dataset_pairs, eval_name, parse, preset_models, remedies, skipped

# The Grad-CAM sample (study.diagnostics.gradcam): this many shared labels, and this many test
# images of each per dataset (24 per test set, so that the share of heat on the hand has an
# interval over images), drawn with this seed.
GRADCAM_LABELS = 6
# The trivial-cue check (study.diagnostics.cues): the border its separability removes, in stored pixels.
CUE_TRIM = 2
GRADCAM_PER_LABEL = 4
GRADCAM_SEED = 0
# The kinds of model (study.core.names.Model.kind) that `score` leaves out: each learnt from, or is
# scored on, a split of the study's own datasets, so a folder of one's own photos says nothing of it.
NOT_SCORABLE = ("few-shot", "adapted", "ablation")


class Unit(NamedTuple):
    """A features unit, the one description of cached features that travels from the plan
    through the store (study.core.store) to the stages: a dataset split's images at model
    resolution R, degraded to r, seen in one view: mirrored (`flip`), an augmented view
    (`view` 1, 2, ...), without a border (`trim`), cut to the hand (`hand` "crop"), or the hand's
    landmark vectors (`hand` "landmarks", at R = r = 0: no backbone); through the prepared
    backbone, or a fine-tuned model's (`weights`: its sha256; `model`: train dataset, R, seed)."""

    dataset: str
    split: str
    R: int
    r: int
    flip: bool = False
    view: int = 0
    weights: str | None = None
    trim: int = 0  # pixels cut from every side of the stored image first (the trivial-cue check)
    # "crop": the images' hand crops; "landmarks": the landmark vectors, at R = r = 0 (no backbone);
    # "both" (read only, never cached): the crops' features and the landmark vectors side by side
    hand: str = ""
    model: tuple[str, int, int] | None = None

    @classmethod
    def landmarks(cls, dataset: str, split: str, view: int = 0) -> "Unit":
        """A split's landmark vectors (of augmented view `view` of every hand when > 0)."""
        return cls(dataset, split, LANDMARKS_R, LANDMARKS_R, view=view, hand="landmarks")

    def __str__(self) -> str:
        extra = " flip" if self.flip else f" augmented view {self.view}" if self.view else ""
        extra += f" without a {self.trim}-pixel border" if self.trim else ""
        if self.hand == "landmarks":
            return f"{self.dataset}/{self.split} landmark vectors" + (
                f", augmented view {self.view}" if self.view else ""
            )
        extra += " hand crops" if self.hand == "crop" else " hand crops and landmarks" if self.hand == "both" else ""
        by = f" ({self.model[0]} seed {self.model[2]})" if self.model else ""
        return f"{self.dataset}/{self.split} R={self.R} r={self.r}{extra}{by}"


class Evaluation(NamedTuple):
    """One model (name, R, seed) scored on one dataset split at test resolution r."""

    model: str
    R: int
    seed: int
    dataset: str
    split: str
    r: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """The units of a preset on the datasets that `prepare` found (`datasets`: name -> its
    summary in datasets.json, with "splits"; a folder given to `score` is one more entry)."""

    preset: Preset
    datasets: dict[str, Any]

    # --- datasets ----------------------------------------------------------------------

    @cached_property
    def dataset_names(self) -> list[str]:
        """The preset's datasets that prepare found, in the preset's order."""
        return [n for n in self.preset.datasets if n in self.datasets]

    def splits(self, name: str) -> dict[str, Any]:
        """The split record of dataset `name` in the plan."""
        return self.datasets[name]["splits"]

    def classes(self, name: str) -> list[int]:
        """Canonical label indices a dataset has (in its training split, else any split); for a
        model's name (study.core.names), the labels that every dataset it was trained on has."""
        if name not in self.datasets:
            return sorted(set.intersection(*(set(self.classes(d)) for d in parse(name).datasets)))
        splits = self.splits(name)
        per_class = splits.get("train", next(iter(splits.values())))["per_class"]
        return sorted(label_index(c) for c in per_class)

    def shared_classes(self, model: str, dataset: str) -> list[int]:
        """The labels a model is scored on in `dataset`: those both have."""
        return sorted(set(self.classes(model)) & set(self.classes(dataset)))

    @cached_property
    def trainable_labels(self) -> dict[str, set[str]]:
        """The labels of each dataset a model can be trained on (it has train and validation splits)."""
        return {
            n: set(self.splits(n)["train"]["per_class"])
            for n in self.dataset_names
            if {"train", "validation"} <= set(self.splits(n))
        }

    # --- models ------------------------------------------------------------------------

    @cached_property
    def models(self) -> list[tuple[str, int]]:
        """(name, R) of every model of the preset (names: study.core.names)."""
        return preset_models(self.preset, self.trainable_labels, self.with_hands)

    @cached_property
    def with_hands(self) -> list[str] | None:
        """The trainable datasets with a hand found in their training and validation images
        (the `hands` entry of datasets.json), which get landmark models; None before the hands
        stage has run (then every one is planned, and its unit asks for the hands stage)."""
        if any("hands" not in self.datasets[n] for n in self.trainable_labels):
            return None
        return [
            n
            for n in self.trainable_labels
            if all(self.datasets[n]["hands"]["splits"][s]["found"] > 0 for s in ("train", "validation"))
        ]

    @cached_property
    def model_seeds(self) -> list[tuple[str, int, int]]:
        """(name, R, seed) of every trained model."""
        return [(name, R, seed) for name, R in self.models for seed in self.preset.seeds]

    @cached_property
    def skipped(self) -> list[str]:
        """The multi-source and few-shot models left out because their datasets share no label."""
        p = self.preset
        return skipped(self.trainable_labels, multi_source=p.multi_source, few_shot=p.few_shot)

    def finetuned(self, name: str) -> bool:
        """Whether a model has its own block 5 (the image-level mode, or `<dataset>/ft5`), so
        that it is scored from features of its own backbone."""
        return self.preset.train.finetune or parse(name).remedy == FT5

    def choices(self, model: str, folder: str, folder_labels_only: bool = False) -> list[int]:
        """The labels a model chooses among on a folder of one's own photos: every label it
        knows; with `folder_labels_only` (for a set known to cover exactly its labels, the
        cross-domain protocol's rule), those it shares with the folder, unless the folder has
        fewer than two labels (then a choice of one would score 1.000 whatever the photos)."""
        if folder_labels_only and len(self.classes(folder)) >= 2:
            return self.shared_classes(model, folder)
        return self.classes(model)

    def scorable(self) -> list[tuple[str, int, int]]:
        """The models a folder of one's own photos is scored with: every kind but the few-shot,
        adapted and ablation models, which belong to the study's own datasets (each learnt from,
        or is scored on, a split of them)."""
        return [(n, R, s) for n, R, s in self.model_seeds if parse(n).kind not in NOT_SCORABLE]

    # --- features ----------------------------------------------------------------------

    def holds_maps(self, u: Unit) -> bool:
        """Whether a features unit also keeps its block-4 maps: the prepared backbone's, at the
        resolutions where block 5 is fine-tuned, of the whole images as they are."""
        return (
            u.R in self.preset.block5.resolutions
            and not u.flip
            and not u.view
            and u.weights is None
            and not u.trim
            and not u.hand
        )

    @cached_property
    def feature_units(self) -> list[Unit]:
        """Every frozen-backbone unit the preset needs, training resolutions first: each
        dataset's training and validation splits at R (with the flipped and augmented views of
        the training split where the preset asks for them), and its test splits at every r <= R."""
        out = []
        p = self.preset
        if p.train.finetune:  # fine-tuned backbones: their features are computed when scoring
            return out
        labels = self.trainable_labels
        for R in p.train_resolutions:
            views = max((parse(f"{d}/{x}").views for d in labels for x in remedies(p, R)), default=0)
            for name in self.dataset_names:
                splits = self.splits(name)
                for split in ("train", "validation"):
                    if split in splits:
                        out.append(Unit(name, split, R, R))
                        if split == "train" and p.train.flip:
                            out.append(Unit(name, split, R, R, flip=True))
                        if split == "train" and name in labels:
                            out += [Unit(name, split, R, R, view=v) for v in range(1, views + 1)]
                out += self.test_units(name, R)
            if p.hands.crops:  # hand crops: every split at R, the test splits at every r
                for name in self.dataset_names:
                    out += [Unit(name, s, R, R, hand="crop") for s in ("train", "validation") if s in self.splits(name)]
                    out += self.test_units(name, R, "crop")
        return out + self.landmark_units + self.cue_units

    @cached_property
    def landmark_units(self) -> list[Unit]:
        """The landmark vectors of every split of every dataset, where the preset has landmark
        models, then the augmented views of each trainable dataset's training hands."""
        p = self.preset
        if not p.hands.landmarks or p.train.finetune:
            return []
        views = [
            Unit.landmarks(n, "train", v) for n in self.trainable_labels for v in range(1, p.hands.landmark_views + 1)
        ]
        return [Unit.landmarks(n, s) for n in self.dataset_names for s in self.splits(n)] + views

    @cached_property
    def cue_units(self) -> list[Unit]:
        """The trivial-cue check's units (study.diagnostics.cues): the training and test splits
        of every dataset in a separability pair, without a border of CUE_TRIM pixels, at the
        lowest model resolution."""
        if not self.separability_pairs:
            return []
        R = min(self.preset.train_resolutions)
        names = [n for n in self.dataset_names if any(n in (a, b) for a, b, _ in self.separability_pairs)]
        return [Unit(n, split, R, R, trim=CUE_TRIM) for n in names for split in ("train", "test")]

    def test_units(self, name: str, R: int, hand: str = "", every_r: bool = True) -> list[Unit]:
        """A dataset's test splits (the preset's, where it has them) at R and every r <= R (the
        landmark vectors at r = R = 0 only), of the images' `hand` view (study.core.names.Model.input);
        at r = R alone without `every_r`."""
        splits = self.splits(name)
        resolutions = self.preset.eval_resolutions_for(R) if every_r else [R]
        splits = [split for split in self.preset.eval.splits if split in splits]
        return [Unit(name, split, R, r, hand=hand) for split in splits for r in resolutions]

    def folder_units(self, name: str, every_r: bool = False) -> list[Unit]:
        """The frozen-backbone units that scoring a folder of photos (`score`) needs: its
        images at every R, their hand crops likewise, their landmark vectors; at r = R alone
        unless `every_r` (`score --every-r`, the resolution sweep)."""
        p = self.preset
        if p.train.finetune:
            return []
        crops = ["crop"] if p.hands.crops else []
        marks = self.test_units(name, LANDMARKS_R, "landmarks") if p.hands.landmarks else []
        return [
            u for R in p.train_resolutions for hand in ["", *crops] for u in self.test_units(name, R, hand, every_r)
        ] + marks

    # --- evaluations -------------------------------------------------------------------

    def evaluations(
        self,
        models: Iterable[tuple[str, int, int]] | None = None,
        eval_datasets: list[str] | None = None,
        every_r: bool = True,
    ) -> list[Evaluation]:
        """Every evaluation of `models` (default: every trained model): each on every test
        split of `eval_datasets` (default: the preset's) at every r <= R (at r = R alone without
        `every_r`); the ablation on its own random test split at R; a few-shot or adapted model
        on its target's test splits only."""
        out = []
        for name, R, seed in self.model_seeds if models is None else models:
            m = parse(name)
            if m.random:
                out.append(Evaluation(name, R, seed, name, "test", R))
                continue
            for eval_ds in [m.target] if m.target else eval_datasets or self.dataset_names:
                out += [
                    Evaluation(name, R, seed, u.dataset, u.split, u.r)
                    for u in self.test_units(eval_ds, R, m.input, every_r)
                ]
        return out

    def finetuned_evaluations(
        self,
        models: Iterable[tuple[str, int, int]] | None = None,
        eval_datasets: list[str] | None = None,
        every_r: bool = True,
    ) -> list[Evaluation]:
        """The evaluations of the fine-tuned models among `models`: each needs features of its
        own backbone (a features unit with `model` set)."""
        return [e for e in self.evaluations(models, eval_datasets, every_r) if self.finetuned(e.model)]

    @cached_property
    def table_rows(self) -> list[tuple[str, int, str, int]]:
        """(model, R, eval dataset as the table names it, r) of every row of table.csv."""
        return list(dict.fromkeys((e.model, e.R, eval_name(e.dataset, e.split), e.r) for e in self.evaluations()))

    # --- diagnostics -------------------------------------------------------------------

    @cached_property
    def separability_pairs(self) -> list[tuple[str, str, list[int]]]:
        """Every pair of the preset's datasets with train and test splits, with the labels
        they share (canonical indices); none in the image-level mode (frozen features only)."""
        if self.preset.train.finetune:
            return []
        labels = {
            n: set(self.splits(n)["train"]["per_class"])
            for n in self.dataset_names
            if {"train", "test"} <= set(self.splits(n))
        }
        return [(a, b, sorted(label_index(c) for c in shared)) for a, b, shared in dataset_pairs(labels)]

    @cached_property
    def separability_rows(self) -> list[tuple[str, str, int, int]]:
        """(dataset a, dataset b, R, r) of every row of separability.csv."""
        p = self.preset
        return [
            (a, b, R, r)
            for a, b, _ in self.separability_pairs
            for R in p.train_resolutions
            for r in p.eval_resolutions_for(R)
        ]

    def gradcam_models(self) -> list[tuple[str, int, int]]:
        """The models Grad-CAM draws, at their first seed: every one but the few-shot, adapted
        and ablation models and those that see landmarks (no image, or not only)."""
        seed = self.preset.seeds[0]
        return [
            (n, R, s)
            for n, R, s in self.model_seeds
            if s == seed and parse(n).kind not in ("few-shot", "adapted", "ablation", "landmarks", "both views")
        ]

    def gradcam_labels(self) -> tuple[list[int], np.random.Generator]:
        """The Grad-CAM sample's labels, drawn from those all the preset's datasets share, and
        the seeded generator that goes on to draw each dataset's test image of each label."""
        shared = sorted(set.intersection(*(set(self.classes(d)) for d in self.dataset_names)))
        rng = np.random.default_rng(GRADCAM_SEED)
        labels = sorted(rng.choice(shared, size=min(GRADCAM_LABELS, len(shared)), replace=False).tolist())
        return labels, rng
