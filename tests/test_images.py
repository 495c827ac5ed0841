import io

import numpy as np
import pytest
from PIL import Image

from study.datasets import images


def encode(arr, fmt="PNG", mode=None):
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    if mode:
        im = im.convert(mode)
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_empty_unknown_and_truncated_bytes_are_refused_with_reasons():
    with pytest.raises(images.BadImage, match="empty file"):
        images.decode(b"")
    with pytest.raises(images.BadImage, match="unknown format"):
        images.decode(b"definitely not an image")
    jpeg = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "JPEG")
    with pytest.raises(images.BadImage, match="corrupt"):
        images.decode(jpeg[: len(jpeg) // 2])


def test_non_square_is_centre_cropped_then_resized():
    arr = np.zeros((512, 513, 3), np.uint8)  # Lexset samples are 513 wide
    arr[:, -1] = 255  # with one spare column, the centre crop drops the last one
    im = images.square_resize(images.decode(encode(arr)), 512)
    assert im.size == (512, 512)
    assert np.asarray(im).max() == 0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_every_mode_becomes_rgb(mode):
    arr = np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    png = images.to_stored_png(encode(arr, mode=mode), 16)
    out = np.asarray(Image.open(io.BytesIO(png)))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_storage_is_lossless_at_native_size():
    arr = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    out = np.asarray(Image.open(io.BytesIO(images.to_stored_png(encode(arr), 32))))
    np.testing.assert_array_equal(out, arr)


def test_image_names():
    assert images.is_image_name("A12.JPG") and images.is_image_name("x.rgb_0000.png")
    assert not images.is_image_name("notes.txt") and not images.is_image_name(".DS_Store")


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixels are never there): what PIL sees
    of a 15000x15000 image before decoding it."""
    import struct
    import zlib

    png = bytearray(encode(np.zeros((1, 1, 3), np.uint8)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    png[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    png[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(png[ihdr - 4 : ihdr + 13])))
    return bytes(png)


def test_an_image_over_the_decompression_bomb_limit_is_refused_not_decoded():
    data = huge_png_header(15000, 15000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    with pytest.raises(images.BadImage, match="too large"):
        images.decode(data)


def test_exif_orientation_is_applied_before_cropping():
    """A phone stores a portrait photo as the sensor saw it (landscape) with an orientation
    tag; the stored image must be the upright one."""
    rng = np.random.default_rng(3)
    sensor = (rng.random((30, 60, 3)) * 255).astype(np.uint8)
    sensor[:, :20] = (255, 0, 0)  # a red band on the sensor's left
    im = Image.fromarray(sensor)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    upright = images.decode(buf.getvalue())
    assert upright.size == (30, 60)  # portrait
    np.testing.assert_array_equal(np.asarray(upright), np.asarray(im.transpose(Image.Transpose.ROTATE_270)))
    assert tuple(np.asarray(upright)[0, 15]) == (255, 0, 0)  # the band is now at the top


def test_other_modes_and_sizes_decode_to_rgb():
    rng = np.random.default_rng(4)
    arr = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    for data in (
        encode(arr, "PNG", "RGBA"),
        encode(arr, "JPEG", "CMYK"),
        encode(arr, "GIF", "P"),
        encode(arr[:1, :1], "JPEG"),
    ):
        im = images.decode(data)
        assert im.mode == "RGB"
        assert images.square_resize(im, 16).size == (16, 16)
