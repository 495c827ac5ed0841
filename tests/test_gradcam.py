"""Grad-CAM (study.diagnostics.gradcam._cam) on a tiny VGG: maps of block 5's size in [0, 1],
the prediction restricted to the labels scored, and each map the ReLU of block 5's output
weighted by the gradient of the predicted logit, as Selvaraju et al. define it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from study.diagnostics.gradcam import _cam
from study.network.model import Block5, VGG16Backbone, make_head


def tiny():
    base = VGG16Backbone(width=1 / 16, rngs=nnx.Rngs(0))
    block5 = Block5.of(base)
    head = make_head("mlp", block5.features_dim, 29, rngs=nnx.Rngs(params=1, dropout=1))
    head.eval()
    return base, block5, head


def test_maps_lie_in_0_1_and_predictions_among_the_scored_labels():
    base, block5, head = tiny()
    images = jnp.asarray(np.random.default_rng(0).random((5, 64, 64, 3), np.float32))
    classes = jnp.asarray([2, 7, 11])
    cam, pred = nnx.jit(_cam)(base, block5, head, images, classes)
    cam = np.asarray(cam)
    assert cam.shape == (5, 4, 4) and cam.min() >= 0 and cam.max() <= 1  # R/16 cells
    assert all(np.isclose(m.max(), 1) or m.max() == 0 for m in cam)
    logits = head(block5(base.block4_map(images)))
    assert np.array_equal(np.asarray(pred), np.asarray(classes)[np.asarray(logits[:, classes]).argmax(-1)])
    _, only = nnx.jit(_cam)(base, block5, head, images, jnp.asarray([5]))
    assert (np.asarray(only) == 5).all()


def test_each_map_is_block5s_output_weighted_by_the_gradient_of_the_predicted_logit():
    base, block5, head = tiny()
    images = jnp.asarray(np.random.default_rng(1).random((2, 32, 32, 3), np.float32))
    cam, pred = nnx.jit(_cam)(base, block5, head, images, jnp.arange(29))
    a = block5.conv_map(base.block4_map(images))  # B x 2 x 2 x C, after the ReLU
    for i in range(2):

        def logit(a_i):
            return head(nnx.max_pool(a_i[None], (2, 2), strides=(2, 2)).mean(axis=(1, 2)))[0, int(pred[i])]

        weights = jax.grad(logit)(a[i]).mean(axis=(0, 1))  # one weight per channel
        want = np.maximum(np.asarray((a[i] * weights).sum(-1)), 0)
        want = want / want.max() if want.max() > 0 else want
        np.testing.assert_allclose(np.asarray(cam[i]), want, rtol=1e-4, atol=1e-6)


def test_the_share_of_heat_in_a_box_spreads_each_cell_over_its_area():
    from study.diagnostics.gradcam import heat_share

    cam = np.zeros((4, 4))
    cam[1, 2] = 1.0  # the cell x in [0.5, 0.75], y in [0.25, 0.5]
    assert heat_share(cam, np.array([0.5, 0.25, 0.75, 0.5])) == 1.0
    assert heat_share(cam, np.array([0.625, 0.25, 1.0, 1.0])) == 0.5  # half the cell's width
    assert heat_share(cam, np.array([0.0, 0.0, 0.5, 1.0])) == 0.0
    assert heat_share(np.zeros((4, 4)), np.array([0, 0, 1, 1.0])) is None
    even = np.ones((8, 8))
    np.testing.assert_allclose(heat_share(even, np.array([0.1, 0.2, 0.4, 0.9])), 0.3 * 0.7)  # the box's area


def test_the_hand_box_is_a_square_with_a_margin_moved_inside_the_image():
    from study.core.hand import hand_box

    pts = np.array([[0.4, 0.4], [0.6, 0.5]])
    np.testing.assert_allclose(hand_box(pts, 0.2), [0.36, 0.31, 0.64, 0.59])  # side 0.2 * 1.4, centred
    np.testing.assert_allclose(hand_box(np.array([[0.9, 0.0], [1.0, 0.2]]), 0.25), [0.7, 0.0, 1.0, 0.3])  # moved inside
    np.testing.assert_allclose(
        hand_box(np.array([[0.0, 0.0], [1.0, 0.9]]), 0.2), [0.0, 0.0, 1.0, 1.0]
    )  # at most the image
