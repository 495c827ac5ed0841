"""The study's datasets: TFDS builders, the label canon, leak-free splits and preparation.

`DATASETS` names every dataset a preset can use and the folder under `--data-dir` where its
archive is expected.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from study.config import Preset
from study.datasets.archive import DatasetError
from study.datasets.builders import AslAlphabet, AslFolder, SyntheticAslAlphabet, make_config
from study.datasets.labels import CANONICAL


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # folder under --data-dir holding the archive (unzipped or the Kaggle zip)
    builder: type
    # The Kaggle dataset id, for datasets that come from Kaggle.
    kaggle: str = ""
    # Folder datasets to score models on, not to train: every image is a test image.
    score_only: bool = False

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
        is_folder = self.builder is AslFolder
        config = make_config(
            preset.storage_size,
            preset.split,
            preset.blank_as_nothing,
            dataset_name=self.name if is_folder else "",
            score_only=self.score_only,
        )
        # TFDS refuses a custom config that shares a name with a predefined one (the default).
        if config.name in self.builder.builder_configs:
            config = config.name
        return self.builder(config=config, data_dir=str(tfds_dir), file_format="array_record")


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("asl_alphabet", "asl-alphabet", AslAlphabet, "grassknoted/asl-alphabet"),
        DatasetSpec(
            "synthetic_asl_alphabet",
            "synthetic-asl-alphabet",
            SyntheticAslAlphabet,
            "lexset/synthetic-asl-alphabet",
        ),
        DatasetSpec("asl_photos", "asl-photos", AslFolder),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called `name`; an error lists the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}") from None


__all__ = ["CANONICAL", "DATASETS", "DatasetError", "DatasetSpec", "get_dataset"]
