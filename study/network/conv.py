"""3x3 convolutions (stride 1, SAME padding, NHWC, HWIO kernels) by four paths.

- `xla`: `lax.conv_general_dilated`, XLA's direct convolution. On GPU cuDNN already picks
  its own algorithm (Winograd and FFT among them), so there every layer takes this path.
- `matmul`: one matrix product over the 3x3 patches (im2col). XLA's CPU convolution is
  pathological on tiny maps (measured on 2 cores: 835 ms for a 2x2, 512->512 convolution of
  64 images, 11 ms as a matrix product), and block 5 of a 32 px input is 2x2.
- `f2`, `f4`: Winograd's minimal filtering F(m x m, 3 x 3) for m = 2 and 4 (Lavin and Gray,
  "Fast Algorithms for Convolutional Neural Networks", 2016). The output is cut into m x m
  tiles; each tile needs (m + 2)^2 multiplications per channel pair instead of 9 m^2 (2.25x
  fewer for m = 2, 4x for m = 4). The input and output transforms are additions of strided
  slices (memory-bound, fused by XLA); the work is one batched matrix product of shape
  ((m+2)^2, tiles, C_in) x ((m+2)^2, C_in, C_out), which runs at the matrix-multiply rate.

The transform matrices are built exactly (rational arithmetic) by Toom-Cook interpolation at
the points below, so nothing is typed in; float32 error grows with m (the reference and
property tests bound it). Kernels are transformed once, in float64, when the weights are
loaded (`prepare`), not per batch. Which path each layer takes is a rule (`choose`), justified
by measurements that `python -m study.run bench` repeats on any machine.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PATHS = ("xla", "matmul", "f2", "f4")
WINOGRAD = {"f2": 2, "f4": 4}
# Interpolation points (plus the point at infinity) of F(m, 3): m + 1 finite points. Small
# integers and halves keep the transforms' entries small, hence the float32 error.
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, Fraction(1, 2), -2)}


def _poly_mul(a: list, b: list) -> list:
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


@functools.cache
def matrices(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(m, r), exact rationals as float64: for an input tile d of m + r - 1
    values and a filter g of r, the correlation y[i] = sum_k d[i + k] g[k] is
    A^T [(G g) * (B^T d)]; in 2D, Y = A^T [(G g G^T) * (B^T d B)] A.

    Toom-Cook: the full convolution s = g * h (degree m + r - 2) is fixed by its values at
    the m + r - 2 finite points p_j and its leading coefficient (the point at infinity).
    With A the evaluation of h (alpha x m) and C the interpolation back to coefficients,
    s = C [(G g) * (A h)], so the correlation, the transpose in h, is A^T [(G g) * (C^T d)]:
    B^T = C^T. The denominators of the Lagrange basis are moved into G.
    """
    points = [Fraction(p) for p in POINTS[m]]
    alpha = m + r - 1
    if len(points) != alpha - 1 or len(set(points)) != len(points):
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} distinct finite points, got {POINTS[m]}")
    AT = [[p**i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    G, C = [], []
    for j, p in enumerate(points):
        others = [q for q in points if q != p]
        f = Fraction(1)
        basis = [Fraction(1)]
        for q in others:
            f *= p - q
            basis = _poly_mul(basis, [-q, Fraction(1)])
        G.append([p**k / f for k in range(r)])
        C.append(basis + [Fraction(0)])  # column j of C: the coefficients of prod (x - q)
    G.append([Fraction(int(k == r - 1)) for k in range(r)])
    monic = [Fraction(1)]
    for q in points:
        monic = _poly_mul(monic, [-q, Fraction(1)])
    C.append(monic)  # the point at infinity: the leading coefficient times prod (x - p)

    def as_float(rows):
        return np.array([[float(x) for x in row] for row in rows], np.float64)

    return as_float(AT), as_float(G), as_float(C)  # C listed by columns is B^T by rows


# Feature maps of at most this many pixels take the matrix-product path where Winograd does
# not apply: XLA's CPU convolution is pathological on them (see above).
SMALL_MAP = 4
# Winograd only where both channel counts are at least these: on VGG16's 64-channel layers
# the transforms (products with (m+2)^2 x (m+2)^2 matrices) cost as much as the
# multiplications they save (measured on 2 cores, 32 images: 86-94 GFLOP/s against XLA's
# 103-136 at 64 and 128 px; the 128-channel layers 158-186 against 136-187, the 256- and
# 512-channel ones 258-537 against 187-203). `bench` measures every path on every layer.
MIN_CHANNELS_IN, MIN_CHANNELS_OUT = 64, 128


def multiplications(path: str, h: int, w: int) -> int:
    """Multiplications per channel pair for an h x w output map (partial tiles count whole)."""
    if path in WINOGRAD:
        m = WINOGRAD[path]
        return -(-h // m) * -(-w // m) * (m + 2) ** 2
    return 9 * h * w


def choose(h: int, w: int, c_in: int, c_out: int, platform: str | None = None, winograd: bool = True) -> str:
    """The path for a convolution of an h x w map from c_in to c_out channels.

    Off CPU, XLA's convolution: cuDNN chooses among its own algorithms, Winograd included.
    On CPU, Winograd where the channels are wide enough (MIN_CHANNELS_*), with the tile size
    that needs the fewest multiplications for the map (F(2x2) on 2x2 maps, F(4x4) from 3x3
    up; ties go to the smaller tile, whose transforms are cheaper); elsewhere XLA's
    convolution, or the matrix product on maps of at most SMALL_MAP pixels. `winograd=False`:
    the direct paths only (what the study used before Winograd; `bench` compares the two).
    """
    if (platform or jax.default_backend()) != "cpu":
        return "xla"
    if winograd and c_in >= MIN_CHANNELS_IN and c_out >= MIN_CHANNELS_OUT:
        return min(WINOGRAD, key=lambda p: (multiplications(p, h, w), WINOGRAD[p]))
    return "matmul" if h * w <= SMALL_MAP else "xla"


def prepare(kernel_HWIO, path: str) -> jax.Array:
    """A kernel in the form its path multiplies by, computed once (in float64 for Winograd)."""
    k = np.asarray(kernel_HWIO)
    if k.shape[:2] != (3, 3):
        raise ValueError(f"3x3 kernels only, got {k.shape}")
    if path == "xla":
        return jnp.asarray(k, jnp.float32)
    if path == "matmul":  # HWIO -> (dy, dx, c) x O: the patches' order
        return jnp.asarray(k.reshape(9 * k.shape[2], k.shape[3]), jnp.float32)
    if path in WINOGRAD:
        m = WINOGRAD[path]
        _, G, _ = matrices(m)
        u = np.einsum("ai,ijco,bj->abco", G, k.astype(np.float64), G)
        return jnp.asarray(u.reshape(-1, *k.shape[2:]), jnp.float32)
    raise ValueError(f"unknown convolution path {path!r}; valid paths: {', '.join(PATHS)}")


def transform(kernel_HWIO: jax.Array, path: str) -> jax.Array:
    """`prepare` inside a traced function, in float32: for training, where the kernel is a
    parameter and its gradient flows back through the transform. Every path is linear in the
    kernel and in the input, so autodiff's backward pass of a Winograd convolution is made of
    Winograd transforms and the same batched matrix products (the gradient of U = G g G^T
    is G^T dU G); `bench` times training through each path."""
    if kernel_HWIO.shape[:2] != (3, 3):
        raise ValueError(f"3x3 kernels only, got {kernel_HWIO.shape}")
    if path == "xla":
        return kernel_HWIO
    if path == "matmul":
        return kernel_HWIO.reshape(9 * kernel_HWIO.shape[2], kernel_HWIO.shape[3])
    if path in WINOGRAD:
        _, G, _ = matrices(WINOGRAD[path])
        G = jnp.asarray(G, jnp.float32)
        u = jnp.einsum("ai,ijco,bj->abco", G, kernel_HWIO, G)
        return u.reshape(-1, *kernel_HWIO.shape[2:])
    raise ValueError(f"unknown convolution path {path!r}; valid paths: {', '.join(PATHS)}")


SAME = ((1, 1), (1, 1))


def conv3x3(x_BxHxWxC: jax.Array, prepared: jax.Array, path: str, padding=SAME) -> jax.Array:
    """The convolution (no bias) of `x` by a kernel `prepare`d for `path`; `padding` is
    ((top, bottom), (left, right)) in pixels (default: SAME)."""
    (pt, pb), (pl, pr) = padding
    if path == "xla":
        return lax.conv_general_dilated(
            x_BxHxWxC, prepared, (1, 1), ((pt, pb), (pl, pr)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    xp = jnp.pad(x_BxHxWxC, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    if path == "matmul":
        return _matmul(xp, prepared)
    if path in WINOGRAD:
        return _winograd(xp, prepared, WINOGRAD[path])
    raise ValueError(f"unknown convolution path {path!r}; valid paths: {', '.join(PATHS)}")


def _matmul(xp: jax.Array, kernel_9CxO: jax.Array) -> jax.Array:
    """VALID convolution of the padded input as one product over its 3x3 patches."""
    b, hp, wp, c = xp.shape
    h, w = hp - 2, wp - 2
    patches = jnp.concatenate([xp[:, dy : dy + h, dx : dx + w, :] for dy in range(3) for dx in range(3)], axis=-1)
    return (patches.reshape(b * h * w, 9 * c) @ kernel_9CxO).reshape(b, h, w, -1)


def _winograd(xp: jax.Array, U: jax.Array, m: int) -> jax.Array:
    """VALID convolution of the padded input by F(m x m, 3 x 3), both transforms as matrix
    products over the tile axis.

    The (m+2) x (m+2) input tiles (overlapping by 2) are gathered tap-major, (m+2)^2 x
    (tiles x C), by reshaping the padded input into m x m blocks: tap j of a tile is row j of
    its block for j < m and row j - m of the next block. B^T d B is then one product with the
    Kronecker square of B^T, and A^T M A one product with that of A^T: small matrices whose
    products run as fast as memory allows, where elementwise adds of strided slices compiled
    to loops over each of the (m+2)^2 outputs, re-reading the input for each (measured: 3-6x
    slower).
    """
    AT, _, BT = matrices(m)
    a = m + 2
    b, hp, wp, c = xp.shape
    h, w = hp - 2, wp - 2  # the VALID output
    th, tw = -(-h // m), -(-w // m)
    xp = jnp.pad(xp, ((0, 0), (0, (th + 1) * m - hp), (0, (tw + 1) * m - wp), (0, 0)))  # whole blocks
    blocks = xp.reshape(b, th + 1, m, tw + 1, m, c).transpose(2, 4, 0, 1, 3, 5)  # m, m, b, th+1, tw+1, c
    rows = jnp.concatenate([blocks[:, :, :, :th], blocks[: a - m, :, :, 1:]], axis=0)
    tiles = jnp.concatenate([rows[:, :, :, :, :tw], rows[:, : a - m, :, :, 1:]], axis=1)  # a, a, b, th, tw, c
    V = (_kron(BT) @ tiles.reshape(a * a, -1)).reshape(a * a, b * th * tw, c)
    M = lax.dot_general(V, U, (((2,), (1,)), ((0,), (0,))))  # (a*a, tiles, O)
    Y = (_kron(AT) @ M.reshape(a * a, -1)).reshape(m, m, b, th, tw, -1)
    return Y.transpose(2, 3, 0, 4, 1, 5).reshape(b, th * m, tw * m, -1)[:, :h, :w]


def _kron(T: np.ndarray) -> jax.Array:
    return jnp.asarray(np.kron(T, T), jnp.float32)
