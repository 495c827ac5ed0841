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
