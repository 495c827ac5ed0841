"""What every stage after `prepare` needs: the preset, the folders, and what prepare wrote."""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from study.config import Preset
from study.datasets import DATASETS, DatasetError
from study.names import parse
from study.units import fingerprint


@dataclasses.dataclass
class Context:
    preset: Preset
    data_dir: Path
    out_dir: Path  # results/<preset>
    tfds_dir: Path = Path("data/tfds")
    cache_dir: Path = Path("data/cache")  # cached features (large; never committed)
    weights_dir: Path = Path("data/weights")
    force: bool = False
    echo: Callable[[str], None] = print
    # Datasets beyond the registry, e.g. a folder given to `score` (name -> DatasetSpec).
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Input-pipeline worker processes of the features pass (study.pipeline): None for the
    # default (0 on a CPU). Changes speed only, never a feature.
    workers: int | None = None

    def _written_by_prepare(self, name: str) -> dict[str, Any]:
        path = self.out_dir / name
        if not path.is_file():
            raise DatasetError(f"{path} not found: run `python -m study.run prepare --preset {self.preset.name}` first")
        return json.loads(path.read_text())

    @cached_property
    def prepared(self) -> dict[str, Any]:
        return self._written_by_prepare("datasets.json")

    @property
    def dataset_names(self) -> list[str]:
        """The preset's datasets that prepare found, in the preset's order."""
        return [n for n in self.preset.datasets if n in self.prepared["datasets"]]

    def builder(self, name: str):
        spec = self.extra.get(name) or DATASETS[name]
        return spec.make_builder(self.preset, self.tfds_dir)

    def splits(self, name: str) -> dict[str, Any]:
        return self.prepared["datasets"][name]["splits"]

    def dataset_fingerprint(self, name: str) -> str:
        d = self.prepared["datasets"][name]
        return fingerprint({"tfds_name": d["tfds_name"], "archive": d["archive"]["listing_sha256"]})

    def classes(self, name: str) -> list[int]:
        """Canonical label indices a dataset has (in its training split, else any split); for a
        model's name (study.names), the labels that every dataset it was trained on has."""
        from study.datasets.labels import label_index

        if name not in self.prepared["datasets"]:
            return sorted(set.intersection(*(set(self.classes(d)) for d in parse(name).datasets)))
        splits = self.splits(name)
        per_class = splits.get("train", next(iter(splits.values())))["per_class"]
        return sorted(label_index(c) for c in per_class)

    @cached_property
    def weights_record(self) -> dict[str, Any]:
        return self._written_by_prepare("weights.json")

    def load_weights(self):
        """The prepared backbone weights; converted again from their source if the converted
        file is not there (a fresh clone scoring with the committed models)."""
        from study.weights import load_converted, restore_converted

        path = self.weights_dir / self.weights_record["converted_file"]
        if not path.is_file():
            restore_converted(self.weights_record, path, self.echo)
        return load_converted(path)
