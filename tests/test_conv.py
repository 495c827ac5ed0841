"""The convolution paths (study.network.conv): Winograd's transforms are exact, every path computes
XLA's convolution on random shapes, paddings and channel counts, and the path rule."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from study.network import conv


@pytest.mark.parametrize("m", sorted(conv.WINOGRAD.values()))
def test_winograd_matrices_compute_the_correlation_exactly(m):
    """Y = A^T [(G g) * (B^T d)] is the correlation of d by g for every d and g: checked on the
    unit vectors (the identity is bilinear), in the exact rationals the matrices come from."""
    AT, G, BT = (np.array([[Fraction(x).limit_denominator(64) for x in row] for row in M]) for M in conv.matrices(m))
    a = m + 2
    for j in range(a):
        for k in range(3):
            d, g = np.zeros(a, object), np.zeros(3, object)
            d[j], g[k] = Fraction(1), Fraction(1)
            got = AT.dot(G.dot(g) * BT.dot(d))
            want = [sum(d[i + q] * g[q] for q in range(3)) for i in range(m)]
            assert list(got) == want, (j, k)
    assert AT.shape == (m, a) and G.shape == (a, 3) and BT.shape == (a, a)


def test_winograd_needs_fewer_multiplications():
    assert conv.multiplications("xla", 8, 8) / conv.multiplications("f2", 8, 8) == 2.25
    assert conv.multiplications("xla", 8, 8) / conv.multiplications("f4", 8, 8) == 4
    assert conv.multiplications("f4", 2, 2) > conv.multiplications("f2", 2, 2)  # a 4x4 tile for 4 outputs


@pytest.mark.slow  # 30 compiled convolutions: half a minute
@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    b=st.integers(1, 3),
    h=st.integers(1, 11),
    w=st.integers(1, 11),
    c_in=st.integers(1, 24),
    c_out=st.integers(1, 24),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    seed=st.integers(0, 2**16),
)
def test_every_path_is_xlas_convolution(b, h, w, c_in, c_out, pads, seed):
    pt, pb, pl, pr = pads
    if h + pt + pb < 3 or w + pl + pr < 3:
        return  # no output
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((b, h, w, c_in)), jnp.float32)
    kernel = rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32)
    padding = ((pt, pb), (pl, pr))
    want = np.asarray(
        lax.conv_general_dilated(
            x,
            jnp.asarray(kernel),
            (1, 1),
            padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=lax.Precision.HIGHEST,
        )
    )
    scale = np.abs(want).max() + 1e-6
    for path in conv.PATHS:
        got = np.asarray(conv.conv3x3(x, conv.prepare(kernel, path), path, padding))
        assert got.shape == want.shape, path
        # float32: F(4x4)'s transforms have entries up to 5 and lose about 3 bits
        assert np.abs(got - want).max() / scale < (1e-5 if path == "f4" else 2e-6), path


def test_kernels_are_transformed_once_in_float64():
    """prepare() works in float64 and rounds once: the transformed kernel is the float32
    rounding of the exact G g G^T."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    _, G, _ = conv.matrices(4)
    exact = np.einsum("ai,ijco,bj->abco", G, k.astype(np.float64), G).reshape(36, 5, 7)
    np.testing.assert_array_equal(np.asarray(conv.prepare(k, "f4")), exact.astype(np.float32))
    with pytest.raises(ValueError, match="valid paths"):
        conv.prepare(k, "fft")
    with pytest.raises(ValueError, match="3x3 kernels"):
        conv.prepare(np.zeros((5, 5, 1, 1), np.float32), "f2")


def test_path_rule():
    # CPU: Winograd where the channels are wide, the tile with the fewest multiplications
    assert conv.choose(8, 8, 256, 512, "cpu") == "f4"
    assert conv.choose(3, 3, 512, 512, "cpu") == "f4"
    assert conv.choose(2, 2, 512, 512, "cpu") == "f2"
    assert conv.choose(64, 64, 64, 64, "cpu") == "xla"  # narrow: the transforms cost what they save
    assert conv.choose(64, 64, 3, 64, "cpu") == "xla"
    assert conv.choose(2, 2, 32, 32, "cpu") == "matmul"  # XLA's CPU convolution on tiny maps
    assert conv.choose(2, 2, 512, 512, "cpu", winograd=False) == "matmul"
    assert conv.choose(8, 8, 512, 512, "cpu", winograd=False) == "xla"
    # elsewhere the platform's convolution (cuDNN chooses its own algorithm)
    assert conv.choose(8, 8, 512, 512, "gpu") == "xla"


@pytest.mark.parametrize("h,w", [(4, 4), (2, 2), (5, 3)])
def test_training_through_every_path_has_xlas_gradient(h, w):
    """Block 5 trains through study.network.conv's paths with the kernel transformed inside the
    traced function (conv.transform): the gradients with respect to the kernel, the bias and
    the input equal those through lax.conv_general_dilated, on a loss that weighs every output."""
    rng = np.random.default_rng(h * 10 + w)
    x = jnp.asarray(rng.standard_normal((3, h, w, 16)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 16, 8)), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(8), jnp.float32)
    weight = jnp.asarray(rng.standard_normal((3, h, w, 8)), jnp.float32)

    def loss(kernel, bias, x, path):
        if path == "reference":
            y = lax.conv_general_dilated(
                x,
                kernel,
                (1, 1),
                conv.SAME,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                precision=lax.Precision.HIGHEST,
            )
        else:
            y = conv.conv3x3(x, conv.transform(kernel, path), path)
        return (jax.nn.relu(y + bias) * weight).sum()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    want = grad(kernel, bias, x, "reference")
    for path in conv.PATHS:
        got = grad(kernel, bias, x, path)
        for name, g, r in zip(("kernel", "bias", "input"), got, want):
            assert g.shape == r.shape
            scale = np.abs(np.asarray(r)).max()
            assert np.abs(np.asarray(g) - np.asarray(r)).max() / scale < (3e-5 if path == "f4" else 3e-6), (path, name)
    # the forward pass too, and the transform is prepare's up to float32 rounding
    for path in conv.PATHS:
        np.testing.assert_allclose(
            np.asarray(conv.transform(kernel, path)), np.asarray(conv.prepare(kernel, path)), rtol=1e-5, atol=1e-5
        )
    with pytest.raises(ValueError, match="valid paths"):
        conv.transform(kernel, "fft")
