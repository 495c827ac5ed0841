"""Augmented views (dm-pix): seeded per image, in range, and not the identity."""

import numpy as np

from study.core.config import CPU, AugmentConfig
from study.datasets import augment


def images(n=6, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def test_a_view_depends_on_seed_view_and_image_index_only():
    x = images()
    cfg = AugmentConfig()
    a = augment.view(x, np.arange(6), 1, cfg, seed=0)
    assert a.shape == x.shape and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    # The same images in another batch (other neighbours, other order) get the same view.
    b = augment.view(x[[4, 2]], np.array([4, 2]), 1, cfg, seed=0)
    np.testing.assert_allclose(b, a[[4, 2]], atol=1e-4)
    assert not np.allclose(augment.view(x, np.arange(6), 2, cfg, seed=0), a, atol=1e-3)  # another view
    assert not np.allclose(augment.view(x, np.arange(6), 1, cfg, seed=1), a, atol=1e-3)  # another seed
    assert not np.allclose(a, x, atol=1e-2)  # not the identity


def test_with_every_strength_at_zero_a_view_is_the_image():
    """The transforms are the configured ones and nothing else: zero strengths give the image back."""
    x = images(4, 16)
    none = AugmentConfig(
        crop_scale=(1.0, 1.0),
        max_rotation=0.0,
        brightness=0.0,
        contrast=(1.0, 1.0),
        saturation=(1.0, 1.0),
        hue=0.0,
        grayscale=0.0,
        blur=0.0,
    )
    np.testing.assert_allclose(augment.view(x, np.arange(4), 1, none, seed=0), x, atol=1e-5)


def test_no_horizontal_flip_among_the_augmentations():
    """Flipping swaps the signing hand: it is TrainConfig.flip, a switch of its own."""
    assert not any("flip" in f for f in AugmentConfig.__dataclass_fields__)
    assert CPU.train.flip is False
