"""The study's datasets: TFDS builders, archives, decoding, and what turns files into model inputs.

`DATASETS` names every dataset a preset can use and the folder under `--data-dir` where its
archive is expected. The builders (and TensorFlow Datasets with them) are imported on first
use, so that reading this registry, or the label canon (study.core.labels), costs no TFDS
import: the report and the command line's option checks never load it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from study.core.config import Preset
from study.core.context import Context
from study.core.errors import ConfigError, DatasetError
from study.core.labels import CANONICAL


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # folder under --data-dir holding the archive (unzipped or the Kaggle zip)
    builder_name: str  # its class in study.datasets.builders
    # The Kaggle dataset id, for datasets that come from Kaggle.
    kaggle: str = ""
    # Folder datasets to score models on, not to train: every image is a test image.
    score_only: bool = False
    # Which folder a score-only dataset is (its resolved path): part of the prepared dataset's name.
    source: str = ""

    @property
    def builder(self) -> type:
        """The TFDS builder class (imports TFDS)."""
        from study.datasets import builders

        return getattr(builders, self.builder_name)

    def manual_dir(self, data_dir: Path) -> Path | None:
        """Where the archive is: `<data-dir>/<folder>/`, or `<data-dir>` if the zip lies there."""
        d = Path(data_dir) / self.folder
        if d.is_dir():
            return d
        for z in getattr(self.builder, "ZIP_NAMES", ())[:1]:
            if (Path(data_dir) / z).is_file():
                return Path(data_dir)
        return None

    def make_builder(self, preset: Preset, tfds_dir: Path):
        """The TFDS builder of this dataset for the preset's storage size and split rule."""
        from study.datasets.builders import make_config

        is_folder = self.builder_name == "AslFolder"
        config = make_config(
            preset.storage_size,
            preset.split,
            preset.blank_as_nothing,
            dataset_name=self.name if is_folder else "",
            score_only=self.score_only,
            source=self.source,
        )
        # TFDS refuses a custom config that shares a name with a predefined one (the default).
        if config.name in self.builder.builder_configs:
            config = config.name
        return self.builder(config=config, data_dir=str(tfds_dir), file_format="array_record")


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("asl_alphabet", "asl-alphabet", "AslAlphabet", "grassknoted/asl-alphabet"),
        DatasetSpec(
            "synthetic_asl_alphabet",
            "synthetic-asl-alphabet",
            "SyntheticAslAlphabet",
            "lexset/synthetic-asl-alphabet",
        ),
        DatasetSpec("asl_photos", "asl-photos", "AslFolder"),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called `name`; an error lists the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}") from None


def open_builder(ctx: Context, name: str):
    """The prepared TFDS builder of dataset `name` for a run (study.core.context.Context):
    one of DATASETS, or a folder that `score` prepared (`ctx.folders`)."""
    spec = ctx.folders[name][0] if name in ctx.folders else DATASETS[name]
    return spec.make_builder(ctx.preset, ctx.tfds_dir)


__all__ = ["CANONICAL", "DATASETS", "DatasetError", "DatasetSpec", "get_dataset", "open_builder"]
