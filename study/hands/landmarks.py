"""Hand landmarks of every image of a prepared dataset split: one cached, resumable unit each.

An image is read from the dataset's archive at the resolution the archive gives (decoded and
turned upright as when it was prepared, study.datasets.images.decode), and the detector
(study.hands.detector) looks for one hand. A miss is tried again on changed pixels
(study.core.config.HandsConfig: black borders, brighter pixels, both), and the record keeps
which try found the hand. Per image a unit stores:

    landmarks   21 x 3 float32: x, y normalised to the upright original image, z in units of
                its width (NaN where no hand was found)
    presence    the landmark model's hand presence (0 where no palm was found)
    left        MediaPipe's handedness score for "Left" (NaN where no hand was found)
    palm        the palm detector's score (0 where none was found)
    tried       the index of the try that found the hand, -1 where none did
    size        the upright original's width and height in pixels

in record order of the prepared split, so that row i is the split's record i. Landmarks are
in the original's coordinates; `to_stored` maps them into the stored square (the centre crop
the prepared images are). The work is cut into chunks of the preset's size, the jobs of the
stage's input workers (study.datasets.pipeline.Feed); each finished chunk is written at once,
so an interrupted unit resumes from its last chunk.

    <cache-dir>/hands/<models sha>/<dataset fingerprint>/<split>/
        hands.npz, unit.json;  while unfinished: parts-<unit fingerprint>/<chunk>.npz
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from study.core import store
from study.core.files import write_bytes_atomic
from study.core.hand import MODEL_FILES, to_stored
from study.core.units import fingerprint, is_done, mark_done, read_marker
from study.hands.detector import Hand, HandLandmarker

# --- one image --------------------------------------------------------------------------------


def changed(image: np.ndarray, border: float, gamma: float) -> tuple[np.ndarray, int]:
    """The image a try looks at: pixels raised to `gamma` (on [0, 1]) and a black border of
    `border` times the longer side on every side; also the border's width in pixels."""
    if gamma != 1.0:
        table = np.round(255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
        image = table[image]
    pad = int(round(border * max(image.shape[:2])))
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    return image, pad


def detect(landmarker: HandLandmarker, image: np.ndarray, tries) -> tuple[Hand | None, int]:
    """The hand of the first try that finds one, its landmarks mapped back into `image`'s
    coordinates, and that try's index; (None, -1) if none does."""
    h, w = image.shape[:2]
    for k, (_, border, gamma) in enumerate(tries):
        seen, pad = changed(image, border, gamma)
        hand = landmarker(seen)
        if hand is None:
            continue
        if pad:
            H, W = seen.shape[:2]
            lm = hand.landmarks.copy()
            lm[:, 0] = (lm[:, 0] * W - pad) / w
            lm[:, 1] = (lm[:, 1] * H - pad) / h
            lm[:, 2] *= W / w
            hand = dataclasses.replace(hand, landmarks=lm)
        return hand, k
    return None, -1


def row(hand: Hand | None, tried: int, image: np.ndarray) -> dict[str, np.ndarray]:
    """One image's stored row: landmarks, presence, left-hand probability, palm score, try, size (NaN if no hand)."""
    h, w = image.shape[:2]
    if hand is None:
        return {
            "landmarks": np.full((21, 3), np.nan, np.float32),
            "presence": np.float32(0),
            "left": np.float32(np.nan),
            "palm": np.float32(0),
            "tried": np.int8(-1),
            "size": np.array([w, h], np.int32),
        }
    left = hand.handedness_score if hand.handedness == "Left" else 1 - hand.handedness_score
    return {
        "landmarks": hand.landmarks.astype(np.float32),
        "presence": np.float32(hand.presence),
        "left": np.float32(left),
        "palm": np.float32(hand.palm_score),
        "tried": np.int8(tried),
        "size": np.array([w, h], np.int32),
    }


def stacked(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The rows stacked per field of store.HANDS_FIELDS (empty arrays if there are none)."""
    return {f: np.stack([r[f] for r in rows]) if rows else _empty(f) for f in store.HANDS_FIELDS}


def _empty(field: str) -> np.ndarray:
    shapes = {"landmarks": ((0, 21, 3), np.float32), "size": ((0, 2), np.int32), "tried": ((0,), np.int8)}
    shape, dtype = shapes.get(field, ((0,), np.float32))
    return np.zeros(shape, dtype)


def read(ctx, dataset: str, split: str) -> dict[str, np.ndarray]:
    """The landmarks of a prepared split as the hands stage cached them (study.core.context.Context
    `ctx`), with `stored`: the landmarks in the stored image's coordinates; MissingArtefact
    naming the command that makes them if they are missing, damaged or of another configuration."""
    arrays = store.load_hands(ctx, dataset, split)
    return arrays | {"stored": to_stored(arrays["landmarks"], arrays["size"])}


# --- a unit's jobs, run by the stage's workers ------------------------------------------------

# Per process: the archives opened and the detector loaded (a worker builds its own).
_archives: dict[tuple[str, str], Any] = {}
_landmarker: list[HandLandmarker] = []


@dataclasses.dataclass(frozen=True)
class Chunks:
    """The chunks `todo` of a unit's files (chunk c: files[c * size:(c + 1) * size]), each a
    job: detection on every image, the rows stacked. Picklable (what grain sends its
    workers): the archive travels as its path and prefix and is opened once per process."""

    archive: tuple[str, str]
    files: tuple[str, ...]
    size: int
    todo: tuple[int, ...]
    tries: tuple[tuple[str, float, float], ...]

    def __len__(self) -> int:
        return len(self.todo)

    def __call__(self, j: int) -> dict[str, Any]:
        from study.datasets.archive import Archive
        from study.datasets.images import decode

        if self.archive not in _archives:
            _archives[self.archive] = Archive(Path(self.archive[0]), self.archive[1])
        if not _landmarker:
            _landmarker.append(HandLandmarker.load())
        archive, landmarker = _archives[self.archive], _landmarker[0]
        c = self.todo[j]
        rows = []
        for f in self.files[c * self.size : (c + 1) * self.size]:
            image = np.asarray(decode(archive.read(f)))
            rows.append(row(*detect(landmarker, image, self.tries), image))
        return {"chunk": c, **stacked(rows)}


@dataclasses.dataclass
class Unit:
    """The landmarks of one prepared split: where they go (study.core.store.hand_files), what
    identifies them (study.core.store.hands_spec), the images' files and their archive."""

    name: str  # for messages: "<dataset>/<split>"
    where: store.HandFiles
    spec: dict[str, Any]
    files: tuple[str, ...]
    archive: tuple[str, str]

    @property
    def marker(self) -> Path:
        """Path of this unit's done marker."""
        return self.where.marker

    @property
    def parts(self) -> Path:
        """The folder of this unit's chunk parts, under its spec's fingerprint."""
        return self.where.parts(fingerprint(self.spec))

    def done(self, force: bool = False) -> bool:
        """Whether the unit is marked done with this spec (never when `force`)."""
        return is_done(self.marker, self.spec, force=force)

    def jobs(self, size: int, tries) -> Chunks:
        """The chunks not yet written (all of them for a new unit)."""
        count = -(-len(self.files) // size)
        have = {int(p.stem) for p in self.parts.glob("*.npz")} if self.parts.is_dir() else set()
        return Chunks(self.archive, self.files, size, tuple(c for c in range(count) if c not in have), tuple(tries))


def compute(unit: Unit, jobs: Chunks, batches: Iterator[dict], echo=print) -> dict[str, Any]:
    """Write each chunk of `batches` (the outputs of `jobs`) as it comes, then the unit."""
    start = time.perf_counter()
    if unit.where.root.is_dir():  # an older unit's files, or parts of another spec
        for p in unit.where.root.iterdir():
            if p != unit.parts:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    unit.parts.mkdir(parents=True, exist_ok=True)
    if len(jobs.todo) < -(-len(unit.files) // jobs.size):
        echo(f"hands {unit.name}: resuming, {len(jobs.todo)} of {-(-len(unit.files) // jobs.size)} chunks left")
    computed = 0
    for out in batches:
        computed += len(out["tried"])
        write_bytes_atomic(
            unit.where.part(fingerprint(unit.spec), out["chunk"]), _npz({f: out[f] for f in store.HANDS_FIELDS})
        )
    parts = sorted(unit.parts.glob("*.npz"))
    arrays = (
        stacked([]) if not parts else {f: np.concatenate([np.load(p)[f] for p in parts]) for f in store.HANDS_FIELDS}
    )
    if len(arrays["tried"]) != len(unit.files):
        raise RuntimeError(f"hands {unit.name}: {len(arrays['tried'])} rows for {len(unit.files)} images")
    write_bytes_atomic(unit.where.arrays, _npz(arrays))
    seconds = round(time.perf_counter() - start, 2)
    found = int((arrays["tried"] >= 0).sum())
    mark_done(
        unit.marker,
        unit.spec,
        [unit.where.arrays],
        images=len(unit.files),
        found=found,
        seconds=seconds,
        images_per_second=round(computed / max(seconds, 1e-9), 2),
    )
    shutil.rmtree(unit.parts)
    return read_marker(unit.marker)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# --- what datasets.json says ------------------------------------------------------------------


def summarize(
    per_split: dict[str, tuple[dict[str, np.ndarray], np.ndarray, tuple[str, ...]]], tries, classes: list[str]
) -> dict[str, Any]:
    """Detection per split and class, which try found the hands, and every miss by file, from
    each split's (arrays, label indices, files)."""
    names = [t[0] for t in tries]
    out: dict[str, Any] = {"models": {role: name for role, (name, _) in MODEL_FILES.items()}, "tries": names}
    splits, misses = {}, {}
    total = found = 0
    for split, (arrays, labels, files) in per_split.items():
        hit = arrays["tried"] >= 0
        per_class = {}
        for i, c in enumerate(classes):
            mine = labels == i
            if mine.any():
                per_class[c] = {"images": int(mine.sum()), "found": int(hit[mine].sum())}
        splits[split] = {
            "images": int(len(hit)),
            "found": int(hit.sum()),
            "rate": _rate(hit.sum(), len(hit)),
            "by_try": {n: int((arrays["tried"] == k).sum()) for k, n in enumerate(names)},
            "per_class": per_class,
        }
        misses[split] = [files[i] for i in np.flatnonzero(~hit)]
        total, found = total + len(hit), found + int(hit.sum())
    out |= {"images": total, "found": found, "rate": _rate(found, total), "splits": splits, "misses": misses}
    return out


def _rate(found: int, images: int) -> float | None:
    return round(float(found) / images, 4) if images else None


def format_summary(name: str, summary: dict[str, Any]) -> str:
    """One line for dataset `name`: hands found of images (share), per split, and per try."""
    parts = ", ".join(f"{s} {v['found']}/{v['images']}" for s, v in summary["splits"].items())
    tries = {}
    for v in summary["splits"].values():
        for n, k in v["by_try"].items():
            tries[n] = tries.get(n, 0) + k
    rate = summary["rate"]
    return (
        f"{name}: a hand found in {summary['found']} of {summary['images']} images"
        f"{f' ({100 * rate:.1f}%)' if rate is not None else ''}: {parts}; by try: "
        + ", ".join(f"{n} {k}" for n, k in tries.items())
    )
