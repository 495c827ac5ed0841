"""Building one prepared dataset, and reading back what was written.

`build_dataset` builds a TFDS dataset once (a second call finds it prepared), under a lock
per dataset, and refuses to reuse one whose archive changed. `summarize` reads back what
was written, without decoding an image: per split the number of images and the count per
class, the files skipped and why, the images left out by the guard band, the smallest frame
distance between a test image and any train or validation image of the same class, and a
check that every file of the archive is accounted for exactly once. Used by the `prepare`
stage and by `score`.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from study.core import labels, splits
from study.core.config import Preset
from study.core.files import held
from study.core.store import Results, name_of
from study.datasets import DatasetError, DatasetSpec
from study.datasets.archive import listed

log = logging.getLogger(__name__)
FRAME_SPLITS = (splits.TRAIN, splits.VALIDATION, splits.TEST)


def build_dataset(spec: DatasetSpec, preset: Preset, manual: Path, tfds_dir: Path, force: bool = False, echo=print):
    """Prepare one dataset, refusing to reuse it if its archive changed (unless `force`).

    Under a lock per prepared dataset: a second run that wants the same dataset waits for
    the first to finish writing it, then finds it prepared.
    """
    builder = spec.make_builder(preset, tfds_dir)
    lock = Path(tfds_dir) / ".locks" / f"{builder.info.full_name.replace('/', '_')}.lock"
    with held(lock, f"the prepared dataset {builder.info.full_name}", echo):
        return _build(spec, preset, manual, tfds_dir, force, echo)


def _build(spec: DatasetSpec, preset: Preset, manual: Path, tfds_dir: Path, force: bool, echo):
    builder = spec.make_builder(preset, tfds_dir)
    if builder.is_prepared():
        archive = builder.open_archive(manual)
        stored = builder.info.metadata.get("archive", {})
        if stored.get("listing_sha256") != archive.fingerprint():
            if not force:
                raise DatasetError(
                    f"{spec.name}: the archive in {manual} has changed since this dataset was "
                    f"prepared ({stored.get('files')} files then, {len(archive.files)} now). "
                    "Run again with --force to rebuild it (results computed from the old one "
                    "will then be refused as stale)."
                )
            log.warning("%s: its archive changed since it was prepared; rebuilding it", spec.name)
            shutil.rmtree(builder.data_dir)
            builder = spec.make_builder(preset, tfds_dir)
        archive.close()
    if not builder.is_prepared():
        echo(f"{spec.name}: building {builder.info.full_name} from {manual.name}/ ...")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints its own banner
                builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
        except (DatasetError, AssertionError) as e:  # TFDS asserts when a split yields no example
            _remove_partial(builder, Path(tfds_dir))
            if isinstance(e, DatasetError):
                raise
            skipped = builder.info.metadata.get("skipped", [])
            raise DatasetError(f"{spec.name}: no usable image in {manual} ({listed(skipped)})") from None
    return builder


def _remove_partial(builder, tfds_dir: Path) -> None:
    """What a failed build leaves under the TFDS folder (its version folder, TFDS's incomplete
    temporary ones, and the folders above them that are now empty): nothing of it is kept."""
    d = Path(builder.data_dir)
    for p in [d, *d.parent.glob(f"{d.name}.incomplete*"), *d.parent.glob("incomplete.*")]:
        shutil.rmtree(p, ignore_errors=True)
    for p in [d.parent, d.parent.parent]:
        if p.is_dir() and p != tfds_dir and p.is_relative_to(tfds_dir) and not any(p.iterdir()):
            p.rmdir()


def read_index(builder) -> dict[str, dict[str, np.ndarray]]:
    """Labels, frames and files of every split, read without decoding a single image."""
    sources = builder.as_data_source(decoders={"image": tfds.decode.SkipDecoding()})
    out = {}
    for split, source in sources.items():
        records = source.__getitems__(list(range(len(source)))) if len(source) else []
        out[split] = {
            "label": np.array([r["label"] for r in records], dtype=np.int64),
            "frame": np.array([r["frame"] for r in records], dtype=np.int64),
            "file": np.array([r["file"].decode() for r in records], dtype=object),
        }
    return out


IMAGE_COLUMNS = ["dataset", "split", "file", "sha256"]


def image_listing(
    name: str, builder, manual: Path, index: dict[str, dict[str, np.ndarray]] | None = None
) -> list[dict]:
    """One row per image of a prepared dataset: its split (or `left_out`, by the guard band),
    its path in the archive and the sha256 of its bytes, by split and path. `prepare` writes
    these rows as `images.csv`, so that a reader can check the splits file by file and `score`
    can tell a user which of their photos are the study's own."""
    index = read_index(builder) if index is None else index
    files = {split: sorted(index[split]["file"]) for split in sorted(index, key=_split_order)}
    files["left_out"] = sorted(x["path"] for x in builder.info.metadata.get("left_out", []))
    archive = builder.open_archive(manual)
    try:
        return [
            {"dataset": name, "split": split, "file": f, "sha256": hashlib.sha256(archive.read(f)).hexdigest()}
            for split, paths in files.items()
            for f in paths
        ]
    finally:
        archive.close()


def summarize(builder) -> dict[str, Any]:
    """What `datasets.json` says of one prepared dataset, computed from the written files."""
    md = builder.info.metadata
    index = read_index(builder)
    split_info = {}
    for split in sorted(index, key=_split_order):
        counts = collections.Counter(labels.CANONICAL[i] for i in index[split]["label"])
        split_info[split] = {
            "images": int(len(index[split]["label"])),
            "per_class": {c: counts[c] for c in labels.CANONICAL if counts[c]},
        }
    left_out = md.get("left_out", [])
    skipped = md.get("skipped", [])
    skipped_files = sum(s["files"] for s in skipped)
    archive_files = md["archive"]["files"]
    in_splits = sum(s["images"] for s in split_info.values())
    if in_splits + len(left_out) + skipped_files != archive_files:
        raise DatasetError(
            f"{builder.name}: accounting error: {archive_files} archive files but {in_splits} in "
            f"splits + {len(left_out)} left out + {skipped_files} skipped"
        )
    _check_every_class_in_every_split(builder.name, split_info)
    return {
        "tfds_name": builder.info.full_name,
        "split_rule": md.get("split_rule", ""),
        "archive": md["archive"],
        "splits": split_info,
        "accounting": {
            "archive_files": archive_files,
            "in_splits": in_splits,
            "left_out_by_guard_band": len(left_out),
            "skipped_files": skipped_files,
        },
        "min_frame_distance": frame_distances(index),
        "left_out_by_guard_band": {
            "images": len(left_out),
            "fraction_of_usable": round(len(left_out) / max(1, in_splits + len(left_out)), 4),
            "per_class": dict(collections.Counter(x["label"] for x in left_out)),
            "files": left_out,
        },
        "skipped": skipped,
    }


def frame_distances(index: dict[str, dict[str, np.ndarray]]) -> dict[str, Any] | None:
    """Smallest same-class frame distances between splits; None for datasets without frames."""
    parts = {s: index[s] for s in FRAME_SPLITS if s in index}
    if not parts or any((p["frame"] < 0).any() for p in parts.values()):
        return None

    def frames(split: str, label: int) -> np.ndarray:
        p = parts.get(split)
        return p["frame"][p["label"] == label] if p is not None else np.array([], np.int64)

    per_class = {}
    for k, name in enumerate(labels.CANONICAL):
        test, val, train = frames("test", k), frames("validation", k), frames("train", k)
        if not (test.size or val.size or train.size):
            continue
        per_class[name] = {
            "test_to_train_or_validation": splits.min_frame_distance(test, np.concatenate([train, val])),
            "validation_to_train": splits.min_frame_distance(val, train),
        }

    def overall(key: str) -> int | None:
        vals = [v[key] for v in per_class.values() if v[key] is not None]
        return min(vals) if vals else None

    return {
        "test_to_train_or_validation": overall("test_to_train_or_validation"),
        "validation_to_train": overall("validation_to_train"),
        "per_class": per_class,
    }


def _check_every_class_in_every_split(name: str, split_info: dict[str, Any]) -> None:
    present = [s for s in FRAME_SPLITS if s in split_info]
    classes = set().union(*(split_info[s]["per_class"] for s in present)) if present else set()
    for s in present:
        missing = sorted(classes - set(split_info[s]["per_class"]), key=labels.label_index)
        if missing:
            raise DatasetError(
                f"{name}: classes {missing} have no images in the written {s} split (their "
                "images were skipped as unreadable; see the skipped list in the dataset's metadata)"
            )


def _split_order(split: str) -> tuple[int, str]:
    order = [splits.TRAIN, splits.VALIDATION, splits.TEST, "kaggle_test"]
    return (order.index(split) if split in order else len(order), split)


def format_summary(name: str, s: dict[str, Any], where: str = name_of(Results, "datasets")) -> str:
    """A few lines per dataset for the terminal; `where` is the file that lists what was skipped."""
    a = s["archive"]
    lines = [f"{name}  ({s['tfds_name']}; {a['form']}, {a['files']:,} files)"]
    lines.append(f"  {'split':<12}{'images':>8}{'classes':>9}   per class")
    for split, info in s["splits"].items():
        counts = list(info["per_class"].values())
        lines.append(f"  {split:<12}{info['images']:>8,}{len(counts):>9}   {min(counts)}-{max(counts)}")
    lo = s["left_out_by_guard_band"]
    lines.append(
        f"  left out by the guard band: {lo['images']:,} ({lo['fraction_of_usable']:.1%}); "
        f"skipped files: {s['accounting']['skipped_files']:,}" + (f" (see {where})" if s["skipped"] else "")
    )
    d = s["min_frame_distance"]
    if d is not None and (d["test_to_train_or_validation"], d["validation_to_train"]) != (None, None):
        lines.append(
            f"  smallest frame distance: test to train/validation {d['test_to_train_or_validation']}, "
            f"validation to train {d['validation_to_train']}"
        )
    return "\n".join(lines)
