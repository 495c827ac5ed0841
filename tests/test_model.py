"""The Flax VGG16 and its heads: shapes at every preset resolution, heads, modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from study.core.config import PRESETS
from study.core.labels import CANONICAL
from study.network import model

RESOLUTIONS = sorted({r for p in PRESETS.values() for r in p.train_resolutions + p.eval_resolutions if r >= 32})


@pytest.mark.parametrize("r", RESOLUTIONS)
def test_full_vgg_output_shape_at_every_preset_resolution(r):
    backbone = nnx.eval_shape(lambda: model.VGG16Backbone(rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(backbone)
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, jax.ShapeDtypeStruct((2, r, r, 3), jnp.float32))
    assert out.shape == (2, 512)
    fmap = jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s).feature_map(x), state, jax.ShapeDtypeStruct((2, r, r, 3), jnp.float32)
    )
    assert fmap.shape == (2, r // 32, r // 32, 512)


@pytest.mark.parametrize("r", [32, 45, 64])
@pytest.mark.parametrize("head", ["mlp", "seed"])
def test_tiny_classifier_runs_with_both_heads(r, head):
    rngs = nnx.Rngs(0)
    backbone = model.VGG16Backbone(width=1 / 16, rngs=rngs)
    assert backbone.features_dim == 32
    clf = model.Classifier(backbone, model.make_head(head, backbone.features_dim, len(CANONICAL), rngs=rngs))
    x = jax.random.uniform(jax.random.key(0), (4, r, r, 3))
    clf.train()
    logits = clf(x)
    assert logits.shape == (4, 29) and bool(jnp.isfinite(logits).all())
    clf.eval()
    a, b = clf(x), clf(x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # no dropout / batch statistics in eval


def test_dropout_is_active_only_in_training():
    head = model.MLPHead(16, 5, rngs=nnx.Rngs(0))
    f = jnp.ones((8, 16))
    head.train()
    assert not np.array_equal(np.asarray(head(f)), np.asarray(head(f)))
    head.eval()
    np.testing.assert_array_equal(np.asarray(head(f)), np.asarray(head(f)))


def test_seed_head_layers_match_the_original_study():
    head = model.SeedHead(512, 29, rngs=nnx.Rngs(0))
    assert isinstance(head.norm, nnx.BatchNorm)
    assert head.dense1.kernel.get_value().shape == (512, 256)
    assert head.dense2.kernel.get_value().shape == (256, 128)
    assert head.out.kernel.get_value().shape == (128, 29)


def test_small_inputs_and_unknown_heads_are_refused():
    backbone = model.VGG16Backbone(width=1 / 16, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="at least 32x32"):
        backbone(jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="valid heads: mlp, seed"):
        model.make_head("resnet", 32, 29, rngs=nnx.Rngs(0))


def test_block5_on_block4_maps_is_the_backbone_split_in_two():
    """Features = block 5 of the block-4 maps: what the features pass caches and what the
    fine-tuned block 5 trains on are the same computation as the whole backbone."""
    rngs = nnx.Rngs(0)
    backbone = model.VGG16Backbone(width=1 / 16, rngs=rngs)
    x = jax.random.uniform(jax.random.key(1), (3, 64, 64, 3))
    feats, maps = backbone.features_and_maps(x)
    assert maps.shape == (3, 4, 4, backbone.convs[model.BLOCK5[0]].in_features)
    np.testing.assert_allclose(feats, backbone(x), rtol=1e-5, atol=1e-6)
    block5 = model.Block5.of(backbone)
    np.testing.assert_allclose(block5(maps), feats, rtol=1e-5, atol=1e-6)
    # A copy: training it leaves the backbone alone.
    block5.convs[0].kernel[...] = block5.convs[0].kernel[...] + 1
    assert not np.allclose(backbone.convs[model.BLOCK5[0]].kernel[...], block5.convs[0].kernel[...])
    assert set(block5.arrays()) == set(model.BLOCK5)
