"""The label canon: the 29 canonical names and how each dataset's folder names map onto them."""

from __future__ import annotations

import string

LETTERS: tuple[str, ...] = tuple(string.ascii_uppercase)
# Canonical label names, in ClassLabel order: A..Z, then the three non-letter classes of the
# Kaggle ASL Alphabet dataset.
CANONICAL: tuple[str, ...] = LETTERS + ("del", "nothing", "space")
# Lexset's class for renders with no hand.
BLANK = "blank"
# A landmark model's prediction for an image where no hand was found, among labels without
# `nothing`: no label at all, always wrong (study.core.hand.no_hand), named NO_HAND_NAME.
NO_HAND, NO_HAND_NAME = -1, "(no hand)"

_BY_LOWER = {name.lower(): name for name in CANONICAL}


def canonical_label(source_label: str, *, blank_as_nothing: bool = True) -> str | None:
    """Canonical name for a dataset's own class name, matched case-insensitively.

    Lexset's `Blank` maps to `nothing` when `blank_as_nothing` (the default; docs/method.md), and to
    None (left out) otherwise. Any other unknown name is None.
    """
    key = source_label.strip().lower()
    if key == BLANK:
        return "nothing" if blank_as_nothing else None
    return _BY_LOWER.get(key)


def label_index(name: str) -> int:
    """Index of a canonical name in CANONICAL (the ClassLabel integer)."""
    return CANONICAL.index(name)


def label_name(index: int) -> str:
    """The name of a predicted label: canonical, or NO_HAND_NAME."""
    return NO_HAND_NAME if index == NO_HAND else CANONICAL[index]
