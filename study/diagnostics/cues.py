"""Trivial cues that tell the datasets apart: the outer frame of pixels, and the border.

Every asl_alphabet image looked at has a saturated blue frame one pixel wide (about RGB 8, 8,
193); asl-photos has none. A network can read that, and the frozen features separate the
datasets perfectly (study.stages.separability). Two checks per pair of datasets that
share labels, both balanced per label and scored like the separability (chance 0.5):

- **frame**: a logistic regression on the outer one-pixel ring of the stored images alone
  (4 S - 4 pixels of an S x S image, RGB in [0, 1]), trained to tell the two training splits
  apart and scored on their test splits. Near 1: the frame alone gives the dataset away.
- **no border**: the separability of the frozen features of the same images with a border of
  study.core.plan.CUE_TRIM pixels cut away (features units of their own, at the lowest model
  resolution R), beside the whole images' at the same R. Still near 1: the features do not
  need the frame to tell the datasets apart.
- **hand crop** (where the preset has hand crops): the separability of the frozen features of
  the images' hand crops (study.core.hand.crop_boxes), at every model resolution R, beside
  the whole images'. Still near 1: the room around the hand is not all that separates them.

The stage (study.stages.cues) writes `<out>/cues/<pair>/<check>.json` and `<out>/cues.csv`. Budget: the frame check
decodes the balanced images once (seconds); the border check's features are one forward
pass per training and test image at the lowest R, computed by the features stage.
"""

from __future__ import annotations

import numpy as np


def ring(images: np.ndarray) -> np.ndarray:
    """The outer one-pixel ring of each N x S x S x 3 image, N x (4 S - 4) * 3, in [0, 1]."""
    top, bottom = images[:, 0], images[:, -1]
    left, right = images[:, 1:-1, 0], images[:, 1:-1, -1]
    return np.concatenate([top, bottom, left, right], axis=1).reshape(len(images), -1).astype(np.float32) / 255
