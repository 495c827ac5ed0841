"""Tiny generated archives in the exact layouts of the study's datasets, for tests and `smoke`.

Each writer produces the layout of one real archive, unzipped or as the zip Kaggle serves,
with frame-numbered file names, and (unless `defects=False`) the bad input a real download can
hold: a truncated image, a zero-byte file, a stray non-image file, an unexpected folder and a
file name without a frame number. The writers return what they planted so tests can check that
each one is skipped and listed.

The images are learnable on purpose: each class is a bright blob at its own place and colour
on a domain-specific background, drifting a little from frame to frame like a video.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from study.core.labels import CANONICAL, LETTERS

_PALETTE_SEED = 1234


def class_image(label: str, size: int, *, domain: str, rng: np.random.Generator, t: float = 0.0) -> np.ndarray:
    """A size x size RGB image for a canonical label: a blob placed and coloured by class."""
    k = CANONICAL.index(label)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = {"real": (120, 100, 90), "render": (60, 110, 150), "photos": (150, 140, 110)}[domain]
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    img += 25 * (yy[..., None] - 0.5) if domain == "render" else 0
    img += rng.normal(0, 6, img.shape)
    if label != "nothing":
        colour = np.random.default_rng(_PALETTE_SEED + k).integers(60, 255, 3)
        cy = 0.2 + 0.6 * ((k % 6) / 5) + 0.03 * np.sin(t)
        cx = 0.2 + 0.6 * ((k // 6) / 4) + 0.03 * np.cos(t)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < 0.015
        img[blob] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _write(dest: Path, files: dict[str, bytes], zip_name: str | None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if zip_name:
        with zipfile.ZipFile(dest / zip_name, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        return
    for name, data in files.items():
        p = dest / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _plant_defects(
    files: dict[str, bytes], class_dir: str, sample: bytes, letter_dirs: tuple[str, str, str, str], frame: int
) -> dict[str, str]:
    """Add the bad files to `files`; returns path -> the kind of defect planted."""
    a, b, c, d = letter_dirs
    planted = {
        f"{class_dir}{a}/{a}{frame}.jpg": "corrupt",
        f"{class_dir}{b}/{b}{frame}.jpg": "empty",
        f"{class_dir}{c}/notes.txt": "not_image",
        f"{class_dir}extra/extra{frame}.jpg": "unexpected_folder",
    }
    files[f"{class_dir}{a}/{a}{frame}.jpg"] = sample[: len(sample) // 2]
    files[f"{class_dir}{b}/{b}{frame}.jpg"] = b""
    files[f"{class_dir}{c}/notes.txt"] = b"labelling notes, not an image\n"
    files[f"{class_dir}extra/extra{frame}.jpg"] = sample
    if d:
        planted[f"{class_dir}{d}/{d}.jpg"] = "no_frame"
        files[f"{class_dir}{d}/{d}.jpg"] = sample
    return planted


def write_asl_alphabet(
    dest: Path,
    *,
    per_class: int = 16,
    size: int = 40,
    frame_step: int = 25,
    zipped: bool = False,
    defects: bool = True,
    classes: tuple[str, ...] = CANONICAL,
    seed: int = 0,
) -> dict:
    """Kaggle grassknoted layout: asl_alphabet_{train,test}/asl_alphabet_{train,test}/..."""
    rng = np.random.default_rng(seed)
    train, test = "asl_alphabet_train/asl_alphabet_train/", "asl_alphabet_test/asl_alphabet_test/"
    files: dict[str, bytes] = {}
    for c in classes:
        for i in range(per_class):
            frame = 1 + i * frame_step
            files[f"{train}{c}/{c}{frame}.jpg"] = _encode(
                class_image(c, size, domain="real", rng=rng, t=frame / 50), "JPEG"
            )
        if c != "del":  # the official test folder has no del
            files[f"{test}{c}_test.jpg"] = _encode(class_image(c, size, domain="real", rng=rng), "JPEG")
    planted = {}
    if defects:
        sample = files[f"{train}{classes[0]}/{classes[0]}1.jpg"]
        planted = _plant_defects(files, train, sample, ("A", "B", "C", "D"), 1 + per_class * frame_step + 100)
    _write(dest, files, "asl-alphabet.zip" if zipped else None)
    return {"files": len(files), "planted": planted}


def write_synthetic_asl_alphabet(
    dest: Path,
    *,
    train_per_class: int = 12,
    test_per_class: int = 4,
    size: int = 48,
    zipped: bool = False,
    defects: bool = True,
    seed: int = 0,
) -> dict:
    """Lexset layout: {Train,Test}_Alphabet/<A..Z|Blank>/<uuid>.rgb_0000.png"""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    for root, n in (("Train_Alphabet/", train_per_class), ("Test_Alphabet/", test_per_class)):
        for c in LETTERS + ("Blank",):
            label = "nothing" if c == "Blank" else c
            for _ in range(n):
                name = uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)))
                files[f"{root}{c}/{name}.rgb_0000.png"] = _encode(
                    class_image(label, size, domain="render", rng=rng, t=float(rng.uniform(0, 6))), "PNG"
                )
    planted = {}
    if defects:
        sample = next(v for k, v in files.items() if k.startswith("Train_Alphabet/A/"))
        # Lexset names carry no frame numbers and need none: no "no_frame" defect here.
        planted = _plant_defects(files, "Train_Alphabet/", sample, ("A", "B", "C", ""), 7)
    _write(dest, files, "synthetic-asl-alphabet.zip" if zipped else None)
    return {"files": len(files), "planted": planted}


def write_asl_folder(
    dest: Path,
    *,
    per_class: int = 12,
    size: int = 40,
    frame_step: int = 20,
    split_dir: str | None = "train",
    defects: bool = True,
    seed: int = 0,
) -> dict:
    """Class-per-folder layout like asl-photos: [<split>/]<Class>/<Class><n>.jpg, `Del` capitalised."""
    rng = np.random.default_rng(seed)
    prefix = f"{split_dir}/" if split_dir else ""
    files: dict[str, bytes] = {}
    for c in CANONICAL:
        folder = c if len(c) == 1 else c.capitalize()
        for i in range(per_class):
            frame = i * frame_step
            files[f"{prefix}{folder}/{folder}{frame}.jpg"] = _encode(
                class_image(c, size, domain="photos", rng=rng, t=frame / 40), "JPEG"
            )
    planted = {}
    if defects:
        sample = files[f"{prefix}A/A0.jpg"]
        planted = _plant_defects(files, prefix, sample, ("A", "B", "C", "D"), per_class * frame_step + 100)
    _write(dest, files, None)
    return {"files": len(files), "planted": planted}


def write_all(data_dir: Path) -> dict:
    """The smoke preset's data: asl-alphabet as the Kaggle zip, the others unzipped."""
    data_dir = Path(data_dir)
    return {
        "asl_alphabet": write_asl_alphabet(data_dir / "asl-alphabet", zipped=True),
        "synthetic_asl_alphabet": write_synthetic_asl_alphabet(data_dir / "synthetic-asl-alphabet"),
        "asl_photos": write_asl_folder(data_dir / "asl-photos"),
    }
