"""How much of their wording two texts share: what sets apart the pairs whose answer
turns on word order ("from A to B", "from B to A") from those worded differently.

The share is the weighted Jaccard index of the two texts' words (lower-case runs of
letters and digits, counted with repeats): 1.0 for the same words in any order. The
verifier's card holds a threshold of its own for pairs at or above its cut, fit on the
pairs of that kind alone (PAWS's word swaps among them), so that they do not set the
threshold of every other pair.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Final

__all__ = ["word_overlap"]

_WORD: Final = re.compile(r"\w+")


def word_overlap(a: str, b: str) -> float:
    """The share of the words of ``a`` and ``b`` that both hold (0.0 when neither has one)."""
    left = Counter(_WORD.findall(a.lower()))
    right = Counter(_WORD.findall(b.lower()))
    union = (left | right).total()
    return (left & right).total() / union if union else 0.0
