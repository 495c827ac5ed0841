"""TensorFlow Datasets builders: the two Kaggle ASL alphabets and any class-per-folder photo set.

Each builder reads its archive from TFDS's manual directory (unzipped, or the zip Kaggle
serves), decodes and resizes every image once to the config's storage size, and writes
ArrayRecord files that `as_data_source()` reads without TensorFlow. Every example carries the
stored image, the canonical label (a ClassLabel over study.core.labels.CANONICAL, the same
integers for every dataset), the dataset's own label, the file's path inside the archive and
its frame number (-1 where the file name has none).

Nothing bad in an archive is silent: files that cannot be used (empty, not an image, corrupt,
in an unknown folder, without a needed frame number) are skipped and listed in the dataset's
metadata with the reason, and so is every image the guard band leaves out. A missing archive,
a missing class folder or a class left with no images in a split is an error that says what
was expected and how to get it.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from study.core import labels, splits
from study.core.config import SplitConfig
from study.datasets import images
from study.datasets.archive import Archive, DatasetError, find_archive, listed

# 1.1.0: EXIF orientation applied; images over PIL's decompression-bomb limit skipped.
DATA_VERSION = "1.1.0"
# Reads and decodes run in threads (PIL releases the GIL while decoding); the batch bounds
# how many decoded images wait for the writer.
_BATCH = 256
_FRAME_RE = re.compile(r"(\d+)$")


@dataclasses.dataclass(eq=False)
class AslConfig(tfds.core.BuilderConfig):
    """A prepared variant of a dataset; its name carries a hash of every parameter below."""

    image_size: int = 128
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    blank_as_nothing: bool = True
    # Folder datasets only: the dataset's own name (e.g. asl_photos).
    dataset_name: str = ""
    # Folder datasets only: every image goes to `test` (photos to score, not to train on).
    score_only: bool = False


def make_config(
    image_size: int,
    split: SplitConfig = SplitConfig(),
    blank_as_nothing: bool = True,
    dataset_name: str = "",
    score_only: bool = False,
    source: str = "",
) -> AslConfig:
    """The config for these parameters, named `[<dataset>-]s<size>-<hash of all parameters>`.

    Changing any parameter changes the name, so a prepared dataset is never reused for a
    different split rule or storage size.
    """
    params = {
        "image_size": image_size,
        "split": dataclasses.asdict(split),
        "blank_as_nothing": blank_as_nothing,
        "dataset_name": dataset_name,
        "version": DATA_VERSION,
    }
    if score_only:  # only in the hash when set: existing dataset names stay as they were
        params["score_only"] = True
    if source:  # a folder of one's own photos is its resolved path: two folders of one name never share
        params["source"] = source
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    prefix = f"{dataset_name}-" if dataset_name else ""
    return AslConfig(
        name=f"{prefix}s{image_size}-{digest}",
        description=json.dumps(params, sort_keys=True),
        image_size=image_size,
        split=split,
        blank_as_nothing=blank_as_nothing,
        dataset_name=dataset_name,
        score_only=score_only,
    )


@dataclasses.dataclass(frozen=True)
class Item:
    """One usable image of the archive, before it is decoded."""

    file: str  # path inside the archive, relative to the layout's root
    source_label: str  # the dataset's own class name (its folder name)
    label: str  # canonical label
    frame: int | None  # frame number from the file name, if it carries one


class Scan:
    """What a builder found in an archive: usable items by given split, and what it skipped."""

    def __init__(self, frames: bool = True) -> None:
        # Whether the dataset's file names carry frame numbers (Lexset's `.rgb_0000` does not).
        self.frames = frames
        self.given: dict[str, list[Item]] = collections.defaultdict(list)
        self.skipped: list[dict] = []
        self._folders: collections.Counter[tuple[str, str]] = collections.Counter()

    def skip(self, path: str, reason: str) -> None:
        """Record one skipped file with its reason."""
        self.skipped.append({"path": path, "reason": reason, "files": 1})

    def skip_in_folder(self, folder: str, reason: str) -> None:
        """Skip a file because of the folder it is in; listed once per folder, with a count."""
        self._folders[(folder.rstrip("/") + "/", reason)] += 1

    def add_image(self, split: str, path: str, size: int, source_label: str, label: str) -> None:
        """Add a file of a known class, or skip it if it cannot be an image."""
        name = path.rsplit("/", 1)[-1]
        if not images.is_image_name(name):
            self.skip(path, "not an image file (by its extension)")
        elif size == 0:
            self.skip(path, "empty file (0 bytes)")
        else:
            m = _FRAME_RE.search(os.path.splitext(name)[0]) if self.frames else None
            frame = int(m.group(1)) if m else None
            self.given[split].append(Item(path, source_label, label, frame))

    def finish(self) -> None:
        """Add the skipped folders, with their file counts, to the skipped list and clear them."""
        for (folder, reason), n in sorted(self._folders.items()):
            self.skipped.append({"path": folder, "reason": reason, "files": n})
        self._folders.clear()


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    """DatasetInfo of a dataset that exists only on this machine: never looked up on GCS.

    TFDS's lookup makes a temporary folder before it finds GCS disabled and never removes
    it, so every builder of an unprepared dataset left an empty `tmp*tfds` folder behind.
    """

    def initialize_from_bucket(self) -> None:
        return None


class _AslBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery; subclasses say where the files are and how splits are cut."""

    VERSION = tfds.core.Version(DATA_VERSION)
    RELEASE_NOTES = {
        "1.0.0": "Frame-block splits with a guard band; images stored as PNG.",
        "1.1.0": "EXIF orientation applied before cropping; oversized images skipped; links out of the folder refused.",
    }
    BUILDER_CONFIGS = [make_config(128)]
    HOMEPAGE = ""
    DESCRIPTION = ""
    # Path that marks the root of the unzipped layout, and the zips Kaggle serves.
    MARKER = ""
    ZIP_NAMES: tuple[str, ...] = ()

    @property
    def config(self) -> AslConfig:
        return self.builder_config  # type: ignore[return-value]

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.config.image_size
        return _LocalDatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(s, s, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=labels.CANONICAL),
                    "source_label": tfds.features.Text(),
                    "file": tfds.features.Text(),
                    "frame": np.int32,
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
            metadata=tfds.core.MetadataDict(),
        )

    # --- what subclasses provide ------------------------------------------------------------

    @abc.abstractmethod
    def _scan(self, archive: Archive) -> Scan:
        """Classify every file of the archive into given splits, or skip it with a reason."""

    @abc.abstractmethod
    def _cut(self, scan: Scan) -> dict[str, list[Item]]:
        """The final splits from the given ones (frame blocks, hash hold-outs, as given)."""

    def open_archive(self, manual_dir: Path) -> Archive:
        archive = find_archive(manual_dir, self.MARKER, self.ZIP_NAMES)
        if archive is None:
            raise DatasetError(self.missing_message(manual_dir))
        return archive

    @classmethod
    def missing_message(cls, manual_dir: Path) -> str:
        return f"{cls.name}: no archive found in {manual_dir}.\n{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}"

    # --- the shared build ------------------------------------------------------------------

    def _split_generators(self, dl_manager):
        try:
            manual_dir = Path(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS: manual dir missing or empty; its text has ours
            raise DatasetError(f"{self.name}: {e}") from None
        archive = self.open_archive(manual_dir)
        scan = self._scan(archive)
        for name, reason in archive.refused.items():
            scan.skip(name, reason)
        scan.finish()
        self._left_out: list[dict] = []
        cut = self._cut(scan)
        self._check_classes(cut)
        self.info.metadata.update(
            {
                "archive": archive.describe(),
                "skipped": scan.skipped,
                "left_out": self._left_out,
                "split_rule": self.split_rule(),
            }
        )
        return {name: self._generate_examples(archive, items) for name, items in cut.items()}

    def _generate_examples(self, archive: Archive, items: list[Item]) -> Iterator:
        size = self.config.image_size

        def load(item: Item) -> bytes | images.BadImage:
            try:
                return images.to_stored_png(archive.read(item.file), size)
            except images.BadImage as e:
                return e

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for start in range(0, len(items), _BATCH):
                batch = items[start : start + _BATCH]
                for item, png in zip(batch, pool.map(load, batch)):
                    if isinstance(png, images.BadImage):
                        self.info.metadata["skipped"].append({"path": item.file, "reason": str(png), "files": 1})
                        continue
                    yield (
                        item.file,
                        {
                            "image": png,
                            "label": item.label,
                            "source_label": item.source_label,
                            "file": item.file,
                            "frame": -1 if item.frame is None else item.frame,
                        },
                    )

    # Splits in which every class of the dataset must have at least one image.
    REQUIRED_SPLITS: tuple[str, ...] = (splits.TRAIN, splits.VALIDATION, splits.TEST)

    def _check_classes(self, cut: dict[str, list[Item]]) -> None:
        classes = sorted({i.label for items in cut.values() for i in items}, key=labels.label_index)
        for split in self.REQUIRED_SPLITS:
            if split not in cut:
                continue
            have = {i.label for i in cut[split]}
            missing = [c for c in classes if c not in have]
            if missing:
                raise DatasetError(
                    f"{self.name}: classes {missing} have no images in the {split} split. "
                    f"Split rule: {self.split_rule()}. A class needs enough usable images, "
                    "with frame numbers spread over the recording, for every split."
                )

    def split_rule(self) -> str:
        return ""

    # --- split helpers -------------------------------------------------------------------

    def _frame_blocks(
        self, scan: Scan, items: list[Item], fractions: tuple[float, float, float]
    ) -> dict[str, list[Item]]:
        """Frame-block split per class; frameless items skipped, guard-band ones left out."""
        sc = self.config.split
        out: dict[str, list[Item]] = collections.defaultdict(list)
        for label, group in _by_label(items).items():
            usable = []
            for item in group:
                if item.frame is None:
                    scan.skip(item.file, "no frame number in the file name (the split needs one)")
                else:
                    usable.append(item)
            if not usable:
                raise DatasetError(
                    f"{self.name}: class {label!r} has no usable images (every file was skipped; see the skipped list)"
                )
            roles = splits.frame_block_split(
                [i.frame for i in usable],
                fractions=fractions,
                max_blocks=sc.max_blocks,
                min_images_per_block=sc.min_images_per_block,
                guard_frames=sc.guard_frames,
            )
            test_frames = [i.frame for i, r in zip(usable, roles) if r == splits.TEST]
            for item, role in zip(usable, roles):
                if role is splits.LEFT_OUT:
                    d_test = splits.min_frame_distance([item.frame], test_frames)
                    near = "test" if d_test is not None and d_test <= sc.guard_frames else "validation"
                    self._left_out.append(
                        {
                            "path": item.file,
                            "label": label,
                            "frame": item.frame,
                            "reason": f"guard band: within {sc.guard_frames} frames of a {near} image",
                        }
                    )
                else:
                    out[role].append(item)
        return dict(out)

    def _hash_validation(self, items: list[Item], fraction: float) -> dict[str, list[Item]]:
        """Carve a validation split from `items` per class by file-name hash."""
        out: dict[str, list[Item]] = {splits.TRAIN: [], splits.VALIDATION: []}
        for group in _by_label(items).values():
            held = splits.hash_holdout([i.file for i in group], fraction)
            for item, h in zip(group, held):
                out[splits.VALIDATION if h else splits.TRAIN].append(item)
        return out


def _by_label(items: list[Item]) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = collections.defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return {k: groups[k] for k in sorted(groups, key=labels.label_index)}


def _kaggle_instructions(slug: str, folder: str, zip_name: str, layout: str) -> str:
    return (
        f"Expected, under the data directory's {folder}/ folder, either the unzipped archive\n"
        f"{layout}"
        f"or the zip Kaggle serves, {folder}/{zip_name}. Download it with the Kaggle CLI\n"
        f"(pip install kaggle; an API token in ~/.kaggle/kaggle.json):\n"
        f"    kaggle datasets download -d {slug} -p <data-dir>/{folder}\n"
        f"or from https://www.kaggle.com/datasets/{slug} (Download), and move the zip there."
    )


class AslAlphabet(_AslBuilder):
    """Kaggle grassknoted/asl-alphabet: real photos, one signer, 29 classes, frame-numbered."""

    TRAIN_DIR = "asl_alphabet_train/asl_alphabet_train/"
    TEST_DIR = "asl_alphabet_test/asl_alphabet_test/"
    MARKER = TRAIN_DIR
    ZIP_NAMES = ("asl-alphabet.zip", "archive.zip")
    HOMEPAGE = "https://www.kaggle.com/datasets/grassknoted/asl-alphabet"
    DESCRIPTION = (
        "ASL Alphabet (Kaggle grassknoted): 200x200 photos of one signer, A-Z, del, nothing, "
        "space. Split by contiguous frame blocks with a guard band; the 28 official test images "
        "are the split kaggle_test."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = _kaggle_instructions(
        "grassknoted/asl-alphabet",
        "asl-alphabet",
        "asl-alphabet.zip",
        "    asl-alphabet/asl_alphabet_train/asl_alphabet_train/<A..Z|del|nothing|space>/<class><n>.jpg\n"
        "    asl-alphabet/asl_alphabet_test/asl_alphabet_test/<class>_test.jpg\n",
    )
    CLASSES = labels.CANONICAL

    def split_rule(self) -> str:
        """The split rule in words: frame blocks per class, guard band, official test images as kaggle_test."""
        sc = self.config.split
        return (
            f"per class, frame blocks {sc.fractions} train/validation/test in up to "
            f"{sc.max_blocks} chunks, guard band {sc.guard_frames} frames; official test "
            "images as kaggle_test"
        )

    def _scan(self, archive: Archive) -> Scan:
        scan = Scan()
        seen: set[str] = set()
        for path in archive.files:
            size = archive.size(path)
            if path.startswith(self.TRAIN_DIR):
                parts = path[len(self.TRAIN_DIR) :].split("/")
                label = labels.canonical_label(parts[0])
                if len(parts) != 2:
                    scan.skip_in_folder(self.TRAIN_DIR + "/".join(parts[:-1]), "unexpected folder")
                elif label is None:
                    scan.skip_in_folder(self.TRAIN_DIR + parts[0], "unknown class folder")
                else:
                    seen.add(label)
                    scan.add_image("train", path, size, parts[0], label)
            elif path.startswith(self.TEST_DIR):
                name = path[len(self.TEST_DIR) :]
                m = re.fullmatch(r"(.+)_test\.[^./]+", name, re.IGNORECASE)
                label = labels.canonical_label(m.group(1)) if m and "/" not in name else None
                if label is None:
                    scan.skip(path, "not an official test image (<class>_test.jpg)")
                else:
                    scan.add_image("kaggle_test", path, size, m.group(1), label)
            else:
                top = path.split("/")[0]
                if "/" in path:
                    scan.skip_in_folder(top, "folder outside the dataset layout")
                else:
                    scan.skip(path, "file outside the dataset layout")
        missing = [c for c in self.CLASSES if c not in seen]
        if missing:
            raise DatasetError(
                f"{self.name}: class folders missing from the archive: {missing} "
                f"(expected {self.TRAIN_DIR}<class>/ for each of {', '.join(self.CLASSES)}). "
                f"The archive may be partial.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        if not scan.given["kaggle_test"]:
            raise DatasetError(
                f"{self.name}: no official test images in {self.TEST_DIR} (expected "
                f"<class>_test.jpg). The archive may be partial.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return scan

    REQUIRED_SPLITS = (splits.TRAIN, splits.VALIDATION, splits.TEST)

    def _cut(self, scan: Scan) -> dict[str, list[Item]]:
        out = self._frame_blocks(scan, scan.given["train"], self.config.split.fractions)
        out["kaggle_test"] = scan.given["kaggle_test"]
        return out


class SyntheticAslAlphabet(_AslBuilder):
    """Lexset's Synthetic ASL Alphabet (Kaggle lexset/synthetic-asl-alphabet): rendered hands."""

    TRAIN_DIR = "Train_Alphabet/"
    TEST_DIR = "Test_Alphabet/"
    MARKER = TRAIN_DIR
    ZIP_NAMES = ("synthetic-asl-alphabet.zip", "archive.zip")
    HOMEPAGE = "https://www.kaggle.com/datasets/lexset/synthetic-asl-alphabet"
    DESCRIPTION = (
        "Synthetic ASL Alphabet (Lexset): 512x512 renders of hands on photographic backgrounds, "
        "A-Z and Blank (mapped to nothing unless switched off). Official train/test split; "
        "validation carved from train by file-name hash."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = _kaggle_instructions(
        "lexset/synthetic-asl-alphabet",
        "synthetic-asl-alphabet",
        "synthetic-asl-alphabet.zip",
        "    synthetic-asl-alphabet/Train_Alphabet/<A..Z|Blank>/<uuid>.rgb_0000.png\n"
        "    synthetic-asl-alphabet/Test_Alphabet/<A..Z|Blank>/<uuid>.rgb_0000.png\n",
    )
    SOURCE_CLASSES = labels.LETTERS + ("Blank",)

    def split_rule(self) -> str:
        """The split rule in words: official train/test, validation by sha256 of the file name."""
        return (
            f"official Train_Alphabet/Test_Alphabet; validation = "
            f"{self.config.split.validation_fraction:.0%} of train per class by sha256 of the "
            f"file name; Blank -> {'nothing' if self.config.blank_as_nothing else 'left out'}"
        )

    def _scan(self, archive: Archive) -> Scan:
        scan = Scan(frames=False)
        seen: dict[str, set[str]] = {"train": set(), "test": set()}
        for path in archive.files:
            size = archive.size(path)
            split = next(
                (s for s, d in (("train", self.TRAIN_DIR), ("test", self.TEST_DIR)) if path.startswith(d)),
                None,
            )
            if split is None:
                if "/" in path:
                    scan.skip_in_folder(path.split("/")[0], "folder outside the dataset layout")
                else:
                    scan.skip(path, "file outside the dataset layout")
                continue
            root = self.TRAIN_DIR if split == "train" else self.TEST_DIR
            parts = path[len(root) :].split("/")
            label = labels.canonical_label(parts[0], blank_as_nothing=self.config.blank_as_nothing)
            if len(parts) != 2:
                scan.skip_in_folder(root + "/".join(parts[:-1]), "unexpected folder")
            elif parts[0].lower() == labels.BLANK and label is None:
                seen[split].add("Blank")
                scan.skip_in_folder(root + parts[0], "Blank left out (blank_as_nothing is off)")
            elif label is None:
                scan.skip_in_folder(root + parts[0], "unknown class folder")
            else:
                seen[split].add(parts[0].capitalize() if parts[0].lower() == labels.BLANK else parts[0].upper())
                scan.add_image(split, path, size, parts[0], label)
        for split, root in (("train", self.TRAIN_DIR), ("test", self.TEST_DIR)):
            missing = [c for c in self.SOURCE_CLASSES if c not in seen[split]]
            if missing:
                raise DatasetError(
                    f"{self.name}: class folders missing from {root}: {missing} (expected "
                    f"{root}<class>/ for each of {', '.join(self.SOURCE_CLASSES)}). The archive "
                    f"may be partial.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
                )
        return scan

    def _cut(self, scan: Scan) -> dict[str, list[Item]]:
        out = self._hash_validation(scan.given["train"], self.config.split.validation_fraction)
        out[splits.TEST] = scan.given["test"]
        return out


# Folder names accepted as splits in a class-per-folder dataset, case-insensitively.
SPLIT_ALIASES = {
    "train": splits.TRAIN,
    "training": splits.TRAIN,
    "validation": splits.VALIDATION,
    "valid": splits.VALIDATION,
    "val": splits.VALIDATION,
    "test": splits.TEST,
    "testing": splits.TEST,
}


class AslFolder(_AslBuilder):
    """Any folder of photos with one sub-folder per class: `<root>/<class>/*` or `<root>/<split>/<class>/*`.

    Class folders are matched case-insensitively to the canonical labels (`Del`, `Blank`, ...);
    unknown ones are listed and ignored. Splits the folder gives are kept (validation is carved
    from train if absent); a folder without a test split is split into train, validation and
    test by frame blocks, which needs frame numbers in the file names (`A123.jpg`).
    """

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Expected a folder with one sub-folder per class, <root>/<class>/<image> or "
        "<root>/<train|validation|test>/<class>/<image>; class names are the letters A-Z, del, "
        "nothing, space (and Blank), in any case."
    )
    DESCRIPTION = "A class-per-folder ASL alphabet photo set."

    def split_rule(self) -> str:
        """The split rule in words, as chosen when the folder was scanned."""
        return self._rule

    def open_archive(self, manual_dir: Path) -> Archive:
        """The folder as an Archive; DatasetError if it is not a directory."""
        if not Path(manual_dir).is_dir():
            raise DatasetError(self.missing_message(manual_dir))
        return Archive(manual_dir)

    def _scan(self, archive: Archive) -> Scan:
        scan = Scan()
        tops = sorted({p.split("/")[0] for p in archive.files if "/" in p})
        as_class = [t for t in tops if labels.canonical_label(t) is not None]
        as_split = [t for t in tops if t.lower() in SPLIT_ALIASES]
        if not as_class and not as_split:
            raise DatasetError(
                f"{self.config.dataset_name or self.name}: no recognisable class folders in "
                f"{archive.path.name}/ (found: {tops or 'no folders'}). "
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        for path in archive.files:
            parts = path.split("/")
            if len(parts) >= 2 and parts[0] in as_split and not as_class:
                split, parts = SPLIT_ALIASES[parts[0].lower()], parts[1:]
                base = path[: -len("/".join(parts))]
            elif len(parts) >= 2 and parts[0] in as_class:
                split, base = "all", ""
            else:
                if len(parts) == 1:
                    scan.skip(path, "file outside any class folder")
                else:
                    scan.skip_in_folder(parts[0], "unknown class folder")
                continue
            label = labels.canonical_label(parts[0])
            if len(parts) != 2:
                scan.skip_in_folder(base + "/".join(parts[:-1]), "unexpected folder")
            elif label is None:
                scan.skip_in_folder(base + parts[0], "unknown class folder")
            else:
                scan.add_image(split, path, archive.size(path), parts[0], label)
        if not any(scan.given.values()):
            scan.finish()
            name = self.config.dataset_name or self.name
            raise DatasetError(f"{name}: no usable image in the class folders ({listed(scan.skipped)})")
        return scan

    def _cut(self, scan: Scan) -> dict[str, list[Item]]:
        given = {k: v for k, v in scan.given.items() if v}
        sc = self.config.split
        if self.config.score_only:
            self._rule = "every image scored (split folders, if any, merged into test)"
            return {splits.TEST: [i for items in given.values() for i in items]}
        if splits.TEST in given:
            out = dict(given)
            if splits.TRAIN in given and splits.VALIDATION not in given:
                f_train, f_val, _ = sc.fractions
                share = f_val / (f_train + f_val)
                if all(i.frame is not None for i in given[splits.TRAIN]):
                    out.update(self._frame_blocks(scan, given[splits.TRAIN], (1 - share, share, 0.0)))
                    self._rule = (
                        f"given train/test kept; validation = frame blocks ({share:.0%}) of train, "
                        f"guard band {sc.guard_frames} frames"
                    )
                else:
                    out.update(self._hash_validation(given[splits.TRAIN], share))
                    self._rule = f"given train/test kept; validation = {share:.0%} of train by file-name hash"
            else:
                self._rule = "splits as given by the folder"
            return out
        if splits.VALIDATION in given:
            raise DatasetError(
                f"{self.config.dataset_name or self.name}: the folder gives a validation split but "
                "no test split; give test/ too, or put everything in one folder to be split."
            )
        (items,) = given.values()
        self._rule = (
            f"per class, frame blocks {sc.fractions} train/validation/test in up to "
            f"{sc.max_blocks} chunks, guard band {sc.guard_frames} frames"
        )
        return self._frame_blocks(scan, items, sc.fractions)
