"""Decoding archive bytes into the stored image: square, resized once, PNG-encoded.

Every image is decoded exactly once, when a dataset is prepared: turned upright by its EXIF
orientation tag (a phone stores a portrait photo as the sensor saw it, lying on its side),
centre-cropped to a square (Lexset renders are 513x512), resized with PIL's antialiased
bicubic filter to the preset's storage size and stored losslessly as PNG. Bytes that are not
a whole image, and images over PIL's decompression-bomb limit (about 179 million pixels),
raise BadImage with the reason, which the builders record and skip. `model_input` is the
one transformation of a stored image at run time: resized to the model's resolution and,
for the resolution study, degraded.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from study.core.hand import pixel_box

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})


class BadImage(ValueError):
    """The bytes are not a complete, decodable image; the message says why."""


def is_image_name(name: str) -> bool:
    """Whether the file name has an image suffix (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def decode(data: bytes) -> Image.Image:
    """Fully decoded, upright RGB image from encoded bytes; BadImage if empty, unreadable,
    truncated or too large to decode safely."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes everything: a truncated file fails here, not later
            return ImageOps.exif_transpose(im).convert("RGB")
    except Image.DecompressionBombError as e:  # raised before any pixel is decoded
        raise BadImage(f"image too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise BadImage("not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for corrupt or truncated data
        raise BadImage(f"corrupt image ({e})") from None


def square_resize(im: Image.Image, size: int) -> Image.Image:
    """Centre crop to the shorter side, then resize to size x size (antialiased bicubic)."""
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    if (w, h) != (s, s):
        im = im.crop((left, top, left + s, top + s))
    if s != size:
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return im


def to_stored_png(data: bytes, size: int) -> bytes:
    """Encoded archive bytes -> the PNG bytes stored in the prepared dataset."""
    im = square_resize(decode(data), size)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)  # lossless; level 1 is fast and near as small
    return buf.getvalue()


def model_input(image_u8: np.ndarray, R: int, r: int, flip: bool = False) -> np.ndarray:
    """A stored image as the model sees it at resolution R after degradation to r: RxRx3 in [0, 1].

    Resized to R (area averaging when shrinking, bilinear when enlarging); for r < R,
    area-downsampled to r x r and resized back to R (bilinear); optionally mirrored.
    """
    return to_unit(model_pixels(image_u8, R, r, flip))


def model_pixels(
    image_u8: np.ndarray, R: int, r: int, flip: bool = False, trim: int = 0, box: np.ndarray | None = None
) -> np.ndarray:
    """`model_input` before the scaling to [0, 1]: R x R x 3 uint8, a quarter of the bytes
    (what the input pipeline's workers send); with `trim`, that many pixels are cut from
    every side of the stored image first; with `box` (x0, y0, x1, y1 normalised, a square:
    study.core.hand.crop_boxes), the image is cut to it first (a hand crop)."""
    if trim:
        image_u8 = image_u8[trim:-trim, trim:-trim]
    if box is not None:
        x0, y0, x1, y1 = pixel_box(box, image_u8.shape[0])
        image_u8 = image_u8[y0:y1, x0:x1]
    im = Image.fromarray(image_u8)
    if im.size != (R, R):
        im = im.resize((R, R), Image.Resampling.BOX if im.size[0] > R else Image.Resampling.BILINEAR)
    if r < R:
        im = im.resize((r, r), Image.Resampling.BOX).resize((R, R), Image.Resampling.BILINEAR)
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(im)


def to_unit(pixels_u8: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1]."""
    return pixels_u8.astype(np.float32) / 255.0
