"""Augmented views of training images, drawn in JAX on the batch with dm-pix.

What separates the datasets is the photograph, not the hand shape: framing and distance,
camera angle, light, white balance, focus. The transforms imitate those (study.core.config.
AugmentConfig has the strengths and why), each drawn per image from a key that depends only
on (seed, view, image index), so a view is the same (to float rounding) whatever the batch
size or the order in which units are computed:

1. random resized crop and rotation, one affine resampling (bilinear, edges extended): a
   square of side s (a share of the image side, uniform in crop_scale) at a uniform position
   inside the image, turned by an angle uniform in [-max_rotation, max_rotation];
2. brightness, contrast, saturation and hue jitter (in that order);
3. grayscale with probability `grayscale`;
4. Gaussian blur with probability `blur`, sigma uniform in blur_sigma.

The images arrive at the model's resolution R (study.datasets.images.model_input) and leave
at R, clipped to [0, 1]. Budget: a few milliseconds per batch on CPU, nothing next to the
forward pass each view costs.
"""

from __future__ import annotations

import functools
import math

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from study.core.config import AugmentConfig


def keys(seed: int, view: int, indices: np.ndarray) -> jax.Array:
    """One key per image: (seed, view, image index in its split)."""
    base = jax.random.fold_in(jax.random.key(seed), view)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(indices, jnp.uint32))


def _crop_rotate(key, image, cfg: AugmentConfig):
    k_scale, k_pos, k_angle = jax.random.split(key, 3)
    size = image.shape[0]
    s = jax.random.uniform(k_scale, minval=cfg.crop_scale[0], maxval=cfg.crop_scale[1])
    # The crop's centre, in output-centred pixels: anywhere that keeps the square inside.
    shift = jax.random.uniform(k_pos, (2,), minval=-1.0, maxval=1.0) * (1 - s) * size / 2
    a = jnp.deg2rad(jax.random.uniform(k_angle, minval=-cfg.max_rotation, maxval=cfg.max_rotation))
    rot = s * jnp.array([[jnp.cos(a), -jnp.sin(a)], [jnp.sin(a), jnp.cos(a)]])
    c = (size - 1) / 2
    offset = c + shift - rot @ jnp.array([c, c])  # input = rot @ output + offset
    matrix = jnp.eye(4).at[:2, :2].set(rot).at[:2, 3].set(offset)
    return pix.affine_transform(image, matrix, order=1, mode="nearest")


def _one(key, image, cfg: AugmentConfig):
    ks = jax.random.split(key, 8)
    x = _crop_rotate(ks[0], image, cfg)
    x = pix.random_brightness(ks[1], x, cfg.brightness)
    x = pix.random_contrast(ks[2], x, *cfg.contrast)
    x = pix.random_saturation(ks[3], jnp.clip(x, 0.0, 1.0), *cfg.saturation)
    x = pix.random_hue(ks[4], x, cfg.hue)
    x = jnp.clip(x, 0.0, 1.0)
    gray = pix.rgb_to_grayscale(x, keep_dims=True)
    x = jnp.where(jax.random.uniform(ks[5]) < cfg.grayscale, gray, x)
    sigma = jax.random.uniform(ks[6], minval=cfg.blur_sigma[0], maxval=cfg.blur_sigma[1])
    kernel = 2 * math.ceil(3 * cfg.blur_sigma[1]) + 1
    blurred = pix.gaussian_blur(x, sigma, kernel)
    x = jnp.where(jax.random.uniform(ks[7]) < cfg.blur, blurred, x)
    return jnp.clip(x, 0.0, 1.0)


@functools.partial(jax.jit, static_argnums=2)
def augment(keys_B: jax.Array, images_BxRxRx3: jax.Array, cfg: AugmentConfig) -> jax.Array:
    """Each image's augmented view, drawn from its key; images in [0, 1], same shape out."""
    return jax.vmap(lambda k, x: _one(k, x, cfg))(keys_B, images_BxRxRx3)


def view(images_BxRxRx3: np.ndarray, indices: np.ndarray, v: int, cfg: AugmentConfig, seed: int) -> np.ndarray:
    """View `v` (1, 2, ...) of the images whose indices in their split are `indices`."""
    return np.asarray(augment(keys(seed, v, indices), jnp.asarray(images_BxRxRx3), cfg))
