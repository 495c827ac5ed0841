"""Domain separability: can a linear classifier tell two datasets apart from the features?

If the frozen VGG16 features separate the datasets almost perfectly while a letter classifier
trained on one transfers little to the other, the features carry the domain (signer, room,
camera) more than the letter. For every pair of datasets that share labels, at every model
resolution R: a logistic regression (standardised features) is trained to tell the two
datasets' training splits apart and scored on their test splits at every degradation r <= R.
Both sides are balanced per label (the same number of images of each shared label from each
dataset, drawn with a fixed seed), so the classifier cannot lean on which letters a dataset
has; chance is 0.5. Training and test images are the frame-block splits, so no near-duplicate
frame is on both sides. The interval is a percentile bootstrap over test images.

Budget: no forward pass (cached features); one fit per (pair, R) of a few thousand 512-d
rows, well under a second on 2 cores. The stage that runs it on the plan's pairs and writes
`<out>/separability/` and `<out>/separability.csv` is study.stages.separability.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from study.core.splits import balanced


def sides(
    xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray, shared: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of two datasets, balanced per shared label (study.core.splits.balanced), and which
    dataset each row is from (0: a, 1: b)."""
    ia, ib = balanced(ya, yb, shared)
    return np.concatenate([xa[ia], xb[ib]]), np.concatenate([np.zeros(len(ia), int), np.ones(len(ib), int)])


def domain_classifier(x: np.ndarray, domain: np.ndarray):
    """A logistic regression on standardised rows that tells the two datasets apart."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x, domain)
