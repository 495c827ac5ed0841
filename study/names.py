"""Model names: what a model saw, said by its name (DESIGN.md section 6), and the preset's list.

    asl_alphabet                      trained on one dataset's training split
    asl_alphabet+asl_photos           multi-source: the union of several datasets' training
                                      splits, labels restricted to those they all have
    asl_alphabet+5shot(asl_photos)    few-shot: a source's training split plus k labelled
                                      images per class of a target's training split
    asl_alphabet+random               the leakage ablation: the same images split at random

Pure: the report (which never imports jax) and the stages share these rules.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

RANDOM = "+random"
_SHOT = re.compile(r"^(?P<source>[a-z0-9_]+)\+(?P<k>\d+)shot\((?P<target>[a-z0-9_]+)\)$")


@dataclasses.dataclass(frozen=True)
class Model:
    """What a model was trained on."""

    sources: tuple[str, ...]  # datasets whose whole training split it saw
    target: str = ""  # few-shot: the dataset k images per class were drawn from
    k: int = 0
    random: bool = False  # the leakage ablation's random split of sources[0]

    @property
    def kind(self) -> str:
        if self.random:
            return "ablation"
        if self.target:
            return "few-shot"
        return "multi-source" if len(self.sources) > 1 else "single"

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset whose labels it was trained on."""
        return self.sources + ((self.target,) if self.target else ())

    def __str__(self) -> str:
        if self.random:
            return self.sources[0] + RANDOM
        if self.target:
            return f"{self.sources[0]}+{self.k}shot({self.target})"
        return "+".join(self.sources)


def parse(name: str) -> Model:
    """The Model a name stands for (the inverse of str(Model))."""
    m = _SHOT.match(name)
    if m:
        return Model((m["source"],), m["target"], int(m["k"]))
    if name.endswith(RANDOM):
        return Model((name.removesuffix(RANDOM),), random=True)
    return Model(tuple(name.split("+")))


def model_names(labels: dict[str, set[str]], *, multi_source: bool, few_shot: tuple[int, ...], ablation: tuple[str, ...],
                finetune: bool = False) -> list[str]:
    """The models of a preset, given the labels of each dataset that has train and validation
    splits (in the preset's order), in table order: single-dataset models, multi-source models
    (the union of all, and with three or more datasets every leave-one-dataset-out union),
    few-shot models for every ordered pair and k, and the leakage ablation. Datasets that
    share no label make no model together (`skipped` lists them). Fine-tuning trains
    single-dataset models only."""
    return _models(labels, multi_source, few_shot, ablation, finetune)[0]


def skipped(labels: dict[str, set[str]], *, multi_source: bool, few_shot: tuple[int, ...]) -> list[str]:
    """The multi-source and few-shot models left out because their datasets share no label."""
    return _models(labels, multi_source, few_shot, (), False)[1]


def _models(labels, multi_source, few_shot, ablation, finetune) -> tuple[list[str], list[str]]:
    trainable = list(labels)
    names, left_out = list(trainable), []
    if finetune:
        return names, left_out
    shared = lambda ds: set.intersection(*(set(labels[d]) for d in ds))
    combined = []
    if multi_source and len(trainable) >= 2:
        unions = [tuple(trainable)]
        if len(trainable) >= 3:
            unions += list(itertools.combinations(trainable, len(trainable) - 1))
        combined += [(u, "+".join(u)) for u in unions]
    combined += [((s, t), str(Model((s,), t, k))) for s, t in itertools.permutations(trainable, 2) for k in few_shot]
    for ds, name in combined:
        (names if shared(ds) else left_out).append(name)
    names += [n + RANDOM for n in ablation if n in trainable]
    return names, left_out


def dataset_pairs(labels: dict[str, set[str]]) -> list[tuple[str, str, list[str]]]:
    """Every pair of datasets (in the given order) with the labels they share; pairs sharing
    none are left out. Used by the domain-separability diagnostic and by the report."""
    names = list(labels)
    return [(a, b, sorted(set(labels[a]) & set(labels[b]))) for i, a in enumerate(names) for b in names[i + 1:]
            if set(labels[a]) & set(labels[b])]
