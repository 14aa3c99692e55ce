"""What a pair's wording says about it: the inputs of the verifier's tree model.

Seventeen numbers per ``(stored, lookup)`` pair: the stage-1 similarity; the agreement
check's verdict and its facts (numbers, negation, names, opposites); the overlap of
words, content words, numbers and word pairs; content words on one side only; the
longest common run of words over the shorter and the longer text; the same words in
another order; lengths in words. The cross-encoder reads the texts as word pieces in a
window; these read them as whole words, and the model over them was trained to weigh
them (``training/verifier/card.py``). Each text is read up to ``MAX_WORDS`` words.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Final

from semanticcache._agreement import _NOT_NAMES, _facts, _name_in, _opposed, texts_agree

__all__ = ["FEATURES", "MAX_WORDS", "wording_features"]

FEATURES: Final = (
    "similarity",
    "agree",
    "numbers_equal",
    "negation_equal",
    "names_match",
    "opposed",
    "jaccard_words",
    "jaccard_content",
    "jaccard_numbers",
    "jaccard_bigrams",
    "only_one_side_content",
    "lcs_min",
    "lcs_max",
    "same_words_other_order",
    "len_min",
    "len_max",
    "len_ratio",
)
MAX_WORDS: Final = 128
"""Words read from each text: the longest common run costs their product."""

_WORD: Final = re.compile(r"\w+(?:'\w+)*")
_NUMBER: Final = re.compile(r"\d+")
# The characters of a text that can hold MAX_WORDS words of ordinary length.
_MAX_CHARS: Final = 4_000


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """The length of the longest common subsequence of ``a`` and ``b``."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _jaccard[T](a: AbstractSet[T], b: AbstractSet[T]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def wording_features(stored: str, lookup: str, similarity: float) -> list[float]:
    """The features of one pair, in ``FEATURES`` order (symmetric in the two texts)."""
    a, b = stored[:_MAX_CHARS], lookup[:_MAX_CHARS]
    fa, fb = _facts(a), _facts(b)
    names_match = all(_name_in(n, fb.words) for n in fa.names) and all(
        _name_in(n, fa.words) for n in fb.names
    )
    wa = [w.casefold() for w in _WORD.findall(a)[:MAX_WORDS]]
    wb = [w.casefold() for w in _WORD.findall(b)[:MAX_WORDS]]
    sa, sb = set(wa), set(wb)
    ca, cb = sa - _NOT_NAMES, sb - _NOT_NAMES
    lcs = _lcs(wa, wb)
    shortest, longest = min(len(wa), len(wb)), max(len(wa), len(wb))
    return [
        similarity,
        float(texts_agree(a, b)),
        float(fa.numbers == fb.numbers),
        float(fa.negated == fb.negated),
        float(names_match),
        float(_opposed(fa.words, fb.words)),
        _jaccard(sa, sb),
        _jaccard(ca, cb),
        _jaccard(set(_NUMBER.findall(a)), set(_NUMBER.findall(b))),
        _jaccard(set(itertools.pairwise(wa)), set(itertools.pairwise(wb))),
        float(len(ca ^ cb)),
        lcs / shortest if shortest else 1.0,
        lcs / longest if longest else 1.0,
        float(sorted(wa) == sorted(wb) and wa != wb),
        float(shortest),
        float(longest),
        shortest / longest if longest else 1.0,
    ]
