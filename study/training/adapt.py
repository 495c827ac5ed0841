"""Adaptation without target labels, on cached features (study.core.config.AdaptConfig).

Each function takes features only: the source's labelled ones and the target's unlabelled
training features. No target label enters any of them; the train stage (study.stages.train)
trains the heads on what they return, with the loop every head shares.

- `Standardise`: a domain's features centred and scaled with its own statistics. A head
  trained on the standardised source is applied to the target standardised with the
  target's statistics; `fold` writes that standardisation into the head's first layer, so
  that the saved head takes raw target features like every other model's.
- `coral`: the affine map that gives source features the target's mean and covariance.
- `pseudo_labels`: the confident predictions of a head on the target's images.
- `self_train`: rounds of pseudo-labels, each training the heads anew on the source's rows and
  the target rows each seed's head labelled confidently (a round's training is the caller's).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from study.core.labels import CANONICAL
from study.network.model import predict_logits


@dataclasses.dataclass(frozen=True)
class Standardise:
    """Centre and scale each feature with the statistics of the rows it was made from."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> "Standardise":
        """Per-feature mean and standard deviation of `x` (std 1 where a feature never varies)."""
        x = np.asarray(x, np.float64)
        std = x.std(0)
        # A feature that never varies (a ReLU that is always off) stays at 0 instead of dividing by 0.
        return cls(x.mean(0), np.where(std > 1e-6 * max(float(std.max()), 1e-12), std, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale).astype(np.float32)


def fold(head, s: Standardise) -> None:
    """Write `s` into the head's first dense layer, in place: head(s(x)) == folded head(x)."""
    if not hasattr(head, "hidden"):
        raise TypeError(f"standardisation is folded into an MLP head's first layer; {type(head).__name__} has none")
    kernel = np.asarray(head.hidden.kernel.value, np.float64)
    bias = np.asarray(head.hidden.bias.value, np.float64)
    head.hidden.kernel.value = jnp.asarray(kernel / s.scale[:, None], jnp.float32)
    head.hidden.bias.value = jnp.asarray(bias - (s.mean / s.scale) @ kernel, jnp.float32)


def _root(c: np.ndarray, power: float) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.clip(w, 1e-12, None) ** power) @ v.T


def _shrunk(x: np.ndarray, shrink: float) -> np.ndarray:
    c = np.cov(x, rowvar=False)
    return (1 - shrink) * c + shrink * np.trace(c) / len(c) * np.eye(len(c))


def coral(source: np.ndarray, target: np.ndarray, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with x @ A + b the source rows whitened by the source's covariance and
    re-coloured with the target's, moved to the target's mean (CORAL, Sun et al. 2016, with
    the means aligned too). Each covariance is shrunk towards its mean variance by `shrink`."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    a = _root(_shrunk(source, shrink), -0.5) @ _root(_shrunk(target, shrink), 0.5)
    return a, target.mean(0) - source.mean(0) @ a


def apply(x: np.ndarray, affine: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`x @ a + b` for the affine map (a, b), computed in float64, returned as float32."""
    a, b = affine
    return (np.asarray(x, np.float64) @ a + b).astype(np.float32)


def pseudo_labels(logits: np.ndarray, classes: list[int], confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose most probable class among `classes` has a probability (softmax over
    `classes`) of at least `confidence`, and that class."""
    z = np.asarray(logits, np.float64)[:, classes]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    keep = np.flatnonzero(p.max(1) >= confidence)
    return keep, np.asarray(classes)[p[keep].argmax(1)]


# Trains one round: (round, table 1 x N x D, labels, each seed's row indices) -> the seeds' heads.
Round = Callable[[int, np.ndarray, np.ndarray, list[np.ndarray]], list]


def self_train(
    heads: dict[int, object],
    tx: np.ndarray,
    ty: np.ndarray,
    ux: np.ndarray,
    classes: list[int],
    rounds: int,
    confidence: float,
    train_round: Round,
    echo=print,
    title: str = "",
) -> tuple[list, dict[int, list[dict]]]:
    """Self-training from each seed's starting head (`heads`: seed -> head): `rounds` times,
    each head pseudo-labels the target's unlabelled rows `ux` among `classes` (`pseudo_labels`),
    and `train_round` trains every seed anew on the source's rows plus its own pseudo-labelled
    rows (one table, each seed's rows). Returns the last round's result and, per seed, what
    each round labelled (for pseudo.json)."""
    seeds = list(heads)
    done: dict[int, list[dict]] = {seed: [] for seed in seeds}
    trained: list = []
    for k in range(1, rounds + 1):
        picked = {
            seed: pseudo_labels(predict_logits(heads[seed], ux, len(CANONICAL)), classes, confidence) for seed in seeds
        }
        table = np.concatenate([tx] + [ux[i] for i, _ in picked.values()])
        labels = np.concatenate([ty] + [y for _, y in picked.values()])
        ends = np.cumsum([len(ty)] + [len(i) for i, _ in picked.values()])
        rows = [np.concatenate([np.arange(len(ty)), np.arange(a, b)]) for a, b in zip(ends[:-1], ends[1:])]
        for seed, (i, y) in picked.items():
            done[seed].append(
                {
                    "round": k,
                    "pseudo_labelled": len(i),
                    "of": len(ux),
                    "per_label": {CANONICAL[c]: int((y == c).sum()) for c in classes},
                }
            )
        echo(
            f"{title} round {k}: pseudo-labels for "
            + ", ".join(f"{len(i)} of {len(ux)} (seed {seed})" for seed, (i, _) in picked.items())
        )
        trained = train_round(k, table[None], labels, rows)
        heads = {seed: head for seed, (head, _, _) in zip(seeds, trained)}
    return trained, done
