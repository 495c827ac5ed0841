"""The `prepare` stage: build every dataset the preset names that exists, account for it, and
convert the ImageNet weights once (study.network.weights.prepare_weights).

For each dataset found under the data directory this builds the TFDS dataset (once: a second
run finds it prepared and only re-reads its summary; study.datasets.build), then reads back
what was written and writes `datasets.json` (see study.datasets.build.summarize) and
`images.csv`, every image's split and sha256 (study.datasets.build.image_listing). When none
is found it says where each goes and how to get it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from study.core.config import Preset
from study.core.context import Context
from study.core.files import held, provenance, write_csv_unless_same, write_json_unless_same
from study.core.store import Results
from study.datasets import DATASETS, DatasetError, fake
from study.datasets.build import IMAGE_COLUMNS, build_dataset, format_summary, image_listing, summarize


def run_stage(ctx: Context) -> None:
    """The `prepare` command: the datasets, then the weights."""
    from study.network.weights import prepare_weights

    prepare(ctx.preset, ctx.data_dir, ctx.out_dir, ctx.tfds_dir, force=ctx.force)
    prepare_weights(ctx.out_dir, ctx.weights_dir, ctx.weights_file)


def prepare(
    preset: Preset,
    data_dir: Path,
    out_dir: Path,
    tfds_dir: Path,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the preset's datasets found in `data_dir`; write and return `datasets.json`."""
    data_dir, out_dir, tfds_dir = Path(data_dir), Path(out_dir), Path(tfds_dir)
    if preset.generated_data:  # under a lock: a second run must not read half-written archives
        with held(data_dir.with_name(data_dir.name + ".lock"), f"the generated data in {data_dir}", echo):
            if not any(DATASETS[n].manual_dir(data_dir) for n in preset.datasets):
                echo(f"writing generated archives for the {preset.name} preset into {data_dir}")
                fake.write_all(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"data directory {data_dir} does not exist.\n" + where_to_put(preset, data_dir))
    summaries: dict[str, Any] = {}
    images: list[dict] = []
    not_found: dict[str, str] = {}
    for name in preset.datasets:
        spec = DATASETS[name]
        manual = spec.manual_dir(data_dir)
        if manual is None:
            not_found[name] = f"expected in <data-dir>/{spec.folder}/"
            echo(f"{name}: not found (expected <data-dir>/{spec.folder}/); skipped")
            continue
        builder = build_dataset(spec, preset, manual, tfds_dir, force, echo)
        summaries[name] = summarize(builder)
        images += image_listing(name, builder, manual)
        echo(format_summary(name, summaries[name]))
    if not summaries:
        raise DatasetError(
            f"none of the {preset.name} preset's datasets was found in {data_dir}.\n" + where_to_put(preset, data_dir)
        )
    results = Results(Path(out_dir))
    _keep_hands(results.datasets, summaries)
    doc = {
        "preset": preset.name,
        "storage_size": preset.storage_size,
        "split": preset.to_dict()["split"],
        "blank_as_nothing": preset.blank_as_nothing,
        "datasets": summaries,
        "not_found": not_found,
        "provenance": provenance(),
    }
    write_json_unless_same(results.datasets, doc)
    write_csv_unless_same(results.images, IMAGE_COLUMNS, images)
    return doc


def _keep_hands(path: Path, summaries: dict[str, Any]) -> None:
    """What the hands stage added to datasets.json, kept for each dataset that is still the same."""
    try:
        old = json.loads(path.read_text())["datasets"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name, summary in summaries.items():
        before = old.get(name) if isinstance(old, dict) else None
        if (
            isinstance(before, dict)
            and "hands" in before
            and before.get("tfds_name") == summary["tfds_name"]
            and before.get("archive") == summary["archive"]
        ):
            summary["hands"] = before["hands"]


def where_to_put(preset: Preset, data_dir: Path) -> str:
    """Each expected folder, how to get its data, and how to try the pipeline without any."""
    lines = ["Put each dataset's archive (unzipped, or the zip Kaggle serves) in its folder:"]
    for name in preset.datasets:
        spec = DATASETS[name]
        folder = Path(data_dir) / spec.folder
        how = (
            f"kaggle datasets download -d {spec.kaggle} -p {folder}"
            if spec.kaggle
            else "any class-per-folder photo set, <class>/<image> (see data/README.md)"
        )
        lines.append(f"  {folder}/\n      {name}: {how}")
    lines.append(
        "data/README.md has the layouts and licences. To try the whole pipeline on generated "
        "images first (about 5 minutes): python -m study.run all --preset smoke"
    )
    return "\n".join(lines)
