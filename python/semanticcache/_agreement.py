"""The agreement check: a cheap test, applied before a semantic hit is served, that two
texts agree on what a paraphrase must keep.

Sentence embeddings place "What is 2 + 2?" next to "What is 2 + 3?", and "Why is X good
for dogs?" next to "Why is X bad for dogs?": the words that change the answer are a
small part of the text. :func:`texts_agree` looks at exactly those words. On the Quora
question pairs of the answer-quality benchmark (docs/BENCHMARKS.md) it lets the cache
serve about a fifth more true duplicates at the same false-hit rate.

The rules (all symmetric; a text always agrees with itself):

1. **Numbers.** Both texts hold the same set of digit runs. Text is NFKC-normalized
   first (full-width digits are digits) and thousands separators are dropped
   (``1,000`` is ``1000``); other separators split (``11:30`` and ``11.30`` both hold
   ``11`` and ``30``).
2. **Negation.** Both texts are negated or neither is. A text is negated when it holds
   ``not``, ``no``, ``never``, ``without``, ``cannot``, ``none``, ``nobody``, ``nothing``,
   ``neither``, ``nor`` or a word ending in ``n't``; ``or not`` at the end of a yes/no
   question ("Are mediums real or not?") does not count.
3. **Names.** Every name of one text occurs in the other, in any case. A name is a
   capitalised word that does not start a sentence (after ``.``, ``?``, ``!`` or ``:``)
   and is not a common function word (``The``, ``Some``, ``What``...), or any word of
   a script without case (Chinese, Japanese, Thai...). A possessive ``'s`` is dropped,
   and a name matches a word it is a prefix of, or that is a prefix of it short by at
   most two letters ("India" matches "Indians", "Pakistanis" matches "Pakistani"). A
   text written mostly in capitals (Title Case, four words or more) yields no names.
4. **Opposites.** No word of a known pair of opposites (good / bad, best / worst, for /
   against, more / less, maximize / minimize, men / women, buy / sell...) appears only
   in one text while its opposite appears only in the other.
5. **Code.** When either text holds code (a fenced block, or lines with structural
   indentation: see :mod:`semanticcache._layout`), both hold the same code parts, line
   for line with their indentation (trailing white space aside): ``print`` inside a
   loop and ``print`` after it are different programs however alike they embed.

Everything else (wording, word order, synonyms) is left to the embedding. The check
never raises: any ``str`` (lone surrogates included) is a valid input.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from semanticcache._layout import layout

__all__ = ["texts_agree"]

# A word: letters and digits, with inner apostrophes ("don't", "Quora's"); "_" is
# replaced by a space before this runs.
_WORD: Final = re.compile(r"\w+(?:'\w+)*")
_DIGITS: Final = re.compile(r"\d+")
# "1,000,000" -> "1000000"; not inside a longer run of digits, dots or commas.
_THOUSANDS: Final = re.compile(r"(?<![\d.,])(\d{1,3})((?:,\d{3})+)(?![\d,])")
# What ends a sentence: the next word starts one.
_SENTENCE_END: Final = re.compile(r"[.?!:]")
# More than this share of capitalised words means Title Case: capitals carry no signal.
_TITLE_CASE_SHARE: Final = 0.6
_TITLE_CASE_MIN_WORDS: Final = 4
# Facts of recent short texts are remembered: a popular entry's stored text, and a
# question asked again, are analysed once. Short texts only, so that the memory stays
# small (at most about 4,096 x 512 characters) and long prompts are not kept alive.
_MEMO_ENTRIES: Final = 4096
_MEMO_MAX_CHARS: Final = 512


def _word_set(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string (easier to read and edit)."""
    return frozenset(words.split())


_NEGATIONS: Final = _word_set("not no never without cannot none nobody nothing neither nor")

# Capitalised words that are not names: function words and question words that open
# titles and clauses ("What Is The Best...", "Who are Some of the...").
_NOT_NAMES: Final = _word_set(
    """
    i i'm i've i'd i'll me my mine we our us you your yours he him his she her it its
    they them their what how why who whom whose when where which is are was were be been
    being am can could do does did should shall will would may might must have has had
    the a an in on at of to and or but for from by with as about into over after before
    than then so if this that these those there here some any all most more much many
    very just also only not no please vs versus etc hi hello dear
    """
)

_OPPOSITES: Final = (
    ("good", "bad"),
    ("best", "worst"),
    ("better", "worse"),
    ("for", "against"),
    ("pros", "cons"),
    ("advantage", "disadvantage"),
    ("advantages", "disadvantages"),
    ("more", "less"),
    ("most", "least"),
    ("maximize", "minimize"),
    ("increase", "decrease"),
    ("positive", "negative"),
    ("before", "after"),
    ("high", "low"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("rich", "poor"),
    ("men", "women"),
    ("man", "woman"),
    ("male", "female"),
    ("boy", "girl"),
    ("boys", "girls"),
    ("buy", "sell"),
    ("gain", "lose"),
    ("win", "lose"),
    ("easy", "hard"),
    ("easiest", "hardest"),
    ("cheap", "expensive"),
    ("legal", "illegal"),
    ("true", "false"),
    ("love", "hate"),
    ("start", "stop"),
    ("old", "new"),
    ("oldest", "newest"),
    ("first", "last"),
    ("past", "future"),
    ("north", "south"),
    ("east", "west"),
    ("up", "down"),
    ("import", "export"),
    ("strong", "weak"),
    ("strengths", "weaknesses"),
    ("big", "small"),
    ("biggest", "smallest"),
    ("largest", "smallest"),
    ("long", "short"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("like", "dislike"),
    ("success", "failure"),
    ("successful", "unsuccessful"),
)


def _opposites_index() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for left, right in _OPPOSITES:
        index.setdefault(left, set()).add(right)
        index.setdefault(right, set()).add(left)
    return {word: frozenset(others) for word, others in index.items()}


_OPPOSITE_OF: Final = _opposites_index()


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the rules compare, read from one text in one pass."""

    numbers: frozenset[str]
    negated: bool
    names: frozenset[str]
    words: frozenset[str]
    code: tuple[str, ...]


def _is_uncased(word: str) -> bool:
    """A word of a script without case (CJK, Thai...): not all digits, and no letter
    with a case (the caller has ruled out ASCII words)."""
    return word.lower() == word.upper() and not word.isdigit()


def _facts(text: str) -> _Facts:
    if len(text) <= _MEMO_MAX_CHARS:
        return _remembered_facts(text)
    return _analyse(text)


def _analyse(text: str) -> _Facts:
    # The typographic apostrophe (U+2019) is an apostrophe; "_" separates words (so the
    # word pattern can be the fast "\w", which includes it).
    normal = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("_", " ")
    if "," in normal:
        normal = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), normal)
    numbers = frozenset(_DIGITS.findall(normal))
    raw: list[str] = []
    starts: set[int] = set()  # indexes of the words that start a sentence
    for sentence in _SENTENCE_END.split(normal):
        found = _WORD.findall(sentence)
        if found:
            starts.add(len(raw))
            raw += found
    folded = [w.casefold() for w in raw]
    folded = [w[:-2] if w.endswith("'s") else w for w in folded]
    words = frozenset(folded)

    negations = _NEGATIONS.intersection(words)
    negated = bool(negations - {"not"}) or ("'" in normal and any(w.endswith("n't") for w in words))
    if not negated and negations:
        # "..., or not?" asks both ways round: it does not negate the question.
        negated = any(
            w == "not" and (i == 0 or folded[i - 1] != "or") for i, w in enumerate(folded)
        )

    capitalised = [i for i, w in enumerate(raw) if w[0].isupper()]
    title_case = len(raw) >= _TITLE_CASE_MIN_WORDS and len(capitalised) > _TITLE_CASE_SHARE * len(
        raw
    )
    names: set[str] = set()
    if not title_case:
        names.update(
            folded[i] for i in capitalised if i not in starts and folded[i] not in _NOT_NAMES
        )
    if not normal.isascii():
        names.update(folded[i] for i, w in enumerate(raw) if not w.isascii() and _is_uncased(w))
    code = layout(unicodedata.normalize("NFC", text)).code
    return _Facts(numbers, negated, frozenset(names), words, code)


_remembered_facts = functools.lru_cache(maxsize=_MEMO_ENTRIES)(_analyse)


def _name_in(name: str, words: frozenset[str]) -> bool:
    if name in words:
        return True
    return any(
        (len(name) >= 3 and word.startswith(name))
        or (len(word) >= 3 and name.startswith(word) and len(name) - len(word) <= 2)
        for word in words
    )


def _opposed(mine: frozenset[str], theirs: frozenset[str]) -> bool:
    only_mine = mine - theirs
    only_theirs = theirs - mine
    return any(
        not _OPPOSITE_OF[word].isdisjoint(only_theirs) for word in only_mine if word in _OPPOSITE_OF
    )


def texts_agree(query: str, stored: str) -> bool:
    """Whether two texts agree on numbers, negation, names, opposites and code (see the
    module documentation for the exact rules); symmetric, and true for equal texts.

    The cache calls it on a lookup text and a semantic candidate's stored text; a
    candidate that does not agree is not served.
    """
    a, b = _facts(query), _facts(stored)
    if a.code != b.code or a.numbers != b.numbers or a.negated != b.negated:
        return False
    if not all(_name_in(n, b.words) for n in a.names):
        return False
    if not all(_name_in(n, a.words) for n in b.names):
        return False
    return not _opposed(a.words, b.words)
