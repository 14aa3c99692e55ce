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
   against, more / less, under / over, before / after, open / close, enable / disable,
   upload / download, take / avoid, bigger / smaller, men / women, buy / sell...: the
   list is :mod:`semanticcache._agreement_words`) appears only in one text while its
   opposite appears only in the other. The same holds for ``am`` / ``pm`` right after a
   number (``9 am``, ``9am``, ``9 a.m.``; "I am" is not a time).
5. **Negating prefixes.** No word of one text is a word of the other with a negating
   prefix (``un``, ``non``, ``dis``, ``in``, or ``im`` / ``il`` / ``ir`` before ``b m p``,
   ``l``, ``r``) when the plain word is only in the other text and the prefixed word only
   in the one: "lock" / "unlock", "possible" / "impossible", "profit" / "non-profit"
   (``non`` and the next word are one word). The rest of the word has at least four
   letters, and words that merely start that way ("inside", "information", "disease",
   "improve"...: a list in :mod:`semanticcache._agreement_words`) do not count.
6. **Direction.** The texts do not join the same two terms in opposite directions:
   "convert Celsius to Fahrenheit" and "convert Fahrenheit to Celsius", "from New York
   to Los Angeles" and "flights to New York from Los Angeles". A direction is the terms
   on each side of ``to`` or ``into``, or in one sentence the term after ``from`` and a
   term after ``to``; a term is up to three words (ended by a function word or a
   punctuation mark; articles after ``to`` and ``from`` are skipped), and the target of
   each text must be the end of the other's source. A text that names a symmetric
   relation (``compare``, ``similar``, ``between``, ``vs``...) has no direction:
   "compare Python to Java" asks what "compare Java to Python" asks.
   Order around ``or``, ``vs`` and ``and`` is not a direction either: "Python or Java,
   which is better?" asks what "Java or Python..." asks.
   A comparison has a direction too: "is Python faster than Java" and "is Java faster
   than Python" compare the same two terms the other way round (the same comparative,
   the word before ``than``, with ``more`` or ``less`` before it when there is one).
7. **Code.** When either text holds code (a fenced block, or lines with structural
   indentation: see :mod:`semanticcache._layout`), both hold the same code parts, line
   for line with their indentation (trailing white space aside): ``print`` inside a
   loop and ``print`` after it are different programs however alike they embed.

Everything else (wording, other word order, synonyms) is left to the embedding. The check
never raises: any ``str`` (lone surrogates included) is a valid input.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from semanticcache._agreement_words import (
    DIRECTION_TERM_WORDS,
    DIRECTION_WORDS,
    MIN_STEM,
    NEGATIONS,
    NOT_NAMES,
    NOT_PREFIX_NEGATIONS,
    OPPOSITES,
    SYMMETRIC_RELATIONS,
)
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
_NEGATIONS: Final = NEGATIONS
_NOT_NAMES: Final = NOT_NAMES
# "5 pm", "5pm", "5 p.m.": the half of the day, read only after a number ("I am" is not).
_MERIDIEM: Final = re.compile(r"\d\s*([ap])\.?m\b", re.IGNORECASE)
# Words and single punctuation marks, for the direction rule (a comma ends a term).
_TOKEN: Final = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
# A word with a negating prefix, and the rest of it: "in" is "im", "il" or "ir" before
# "b m p", "l" and "r" ("impossible", "illegal", "irregular"; "inbound" is none of them).
_PREFIXED: Final = re.compile(
    r"(?<![\w'])(?:non|dis|un|in(?![bmplr])|im(?=[bmp])|il(?=l)|ir(?=r))"
    rf"(\w[\w']{{{MIN_STEM - 1},}})(?![\w'])"
)
_NOT_NEGATING: Final = re.compile("|".join(sorted(NOT_PREFIX_NEGATIONS)))
_ARTICLES: Final = frozenset(("the", "a", "an"))
_SENTENCE_ENDS: Final = frozenset(".?!:;")
_DIRECTION_MARKS: Final = DIRECTION_WORDS | _SENTENCE_ENDS | {"from"}
# Words that end a term of a direction: function words and the direction words.
_TERM_BOUNDARY: Final = _NOT_NAMES | DIRECTION_WORDS
# Words before a comparative that belong to it: "more expensive than".
_DEGREE: Final = frozenset(("more", "less"))


def _opposites_index() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for left, right in OPPOSITES:
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
    meridiem: frozenset[str]
    # (prefixed word, the rest): "unlock" -> ("unlock", "lock"), "non-profit" ->
    # ("nonprofit", "profit"); not yet checked against NOT_PREFIX_NEGATIONS.
    prefixed: frozenset[tuple[str, str]]
    # The words that occur other than right after "non": "profit" is not plain in
    # "non-profit".
    plain: frozenset[str]
    # (source, target) terms around "to" / "into", each a tuple of words.
    directions: frozenset[tuple[tuple[str, ...], tuple[str, ...]]]
    # (comparative, (the term before it, the term after "than")), each a tuple of words:
    # "python faster than java" -> (("faster",), (("python",), ("java",))).
    comparisons: frozenset[tuple[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]]]


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
    meridiem = (
        frozenset(m.casefold() for m in _MERIDIEM.findall(normal)) if numbers else frozenset()
    )
    prefixed, plain = _prefixed(folded, words)
    directions = (
        _directions(normal)
        if not DIRECTION_WORDS.isdisjoint(words)
        and SYMMETRIC_RELATIONS.isdisjoint(words)
        and _may_join_terms(folded)
        else frozenset()
    )
    comparisons = _comparisons(normal) if "than" in words else frozenset()
    return _Facts(
        numbers,
        negated,
        frozenset(names),
        words,
        code,
        meridiem,
        prefixed,
        plain,
        directions,
        comparisons,
    )


def _prefixed(
    folded: list[str], words: frozenset[str]
) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    found = {(m.group(0), m.group(1)) for m in _PREFIXED.finditer(" ".join(words))}
    if "non" not in words:
        return frozenset(found), words
    # "non-profit" and "non profit" are "nonprofit"; the word after "non" is not plain.
    after_non = {folded[i + 1] for i, w in enumerate(folded[:-1]) if w == "non"}
    found.update(("non" + w, w) for w in after_non)
    elsewhere = {w for i, w in enumerate(folded) if i == 0 or folded[i - 1] != "non"}
    return frozenset(found), words - (after_non - elsewhere)


def _may_join_terms(folded: list[str]) -> bool:
    """Whether a direction word of the text has a term word after it, and one before it
    or a "from" in the text (a cheap test on the words alone: punctuation, which also
    ends a term, is left to _directions)."""
    last = len(folded) - 1
    has_from = "from" in folded
    for i, word in enumerate(folded):
        if word in DIRECTION_WORDS and i < last:
            if not has_from and (i == 0 or folded[i - 1] in _TERM_BOUNDARY):
                continue
            after = i + 1
            while after < last and folded[after] in _ARTICLES:
                after += 1
            if folded[after] not in _TERM_BOUNDARY:
                return True
    return False


def _tokens(normal: str) -> list[str]:
    """The words and punctuation marks of the text, casefolded, less each "'s"."""
    tokens = _TOKEN.findall(normal.casefold())
    if "'" in normal:
        tokens = [t[:-2] if t.endswith("'s") else t for t in tokens]
    return tokens


def _directions(normal: str) -> frozenset[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The (source, target) terms of the text's directions: the terms on each side of
    "to" or "into", and in one sentence the term after "from" with each term after "to"
    ("flights to Rome from Paris"). A term is up to three words, ended by a function
    word or a punctuation mark; articles after "to" and "from" are skipped."""
    tokens = _tokens(normal)
    tokens.append(".")  # the last sentence ends
    found: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    sources: list[tuple[str, ...]] = []  # after "from", in this sentence
    targets: list[tuple[str, ...]] = []  # after "to", in this sentence
    for i in [i for i, part in enumerate(tokens) if part in _DIRECTION_MARKS]:
        part = tokens[i]
        if part in _SENTENCE_ENDS:
            found.update((s, t) for s in sources for t in targets if s != t)
            sources.clear()
            targets.clear()
        elif part == "from":
            source = _term_after(tokens, i)
            if source:
                sources.append(source)
        else:
            target = _term_after(tokens, i)
            if target:
                targets.append(target)
                start = i
                while (
                    start > 0
                    and i - start < DIRECTION_TERM_WORDS
                    and _is_term_word(tokens[start - 1])
                ):
                    start -= 1
                if start < i:
                    found.add((tuple(tokens[start:i]), target))
    return frozenset(found)


def _comparisons(
    normal: str,
) -> frozenset[tuple[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]]]:
    """Each "A faster than B" of the text: the comparative (the word before "than",
    with "more" or "less" before it) and the terms before it and after "than"."""
    tokens = _tokens(normal)
    found = set()
    for i in [i for i, part in enumerate(tokens) if part == "than"]:
        begin = i - 1
        if begin < 1 or not tokens[begin][0].isalnum():
            continue
        if tokens[begin - 1] in _DEGREE:
            begin -= 1
        start = begin
        while (
            start > 0 and begin - start < DIRECTION_TERM_WORDS and _is_term_word(tokens[start - 1])
        ):
            start -= 1
        after = _term_after(tokens, i)
        if start < begin and after:
            found.add((tuple(tokens[begin:i]), (tuple(tokens[start:begin]), after)))
    return frozenset(found)


def _term_after(tokens: list[str], i: int) -> tuple[str, ...]:
    begin = i + 1
    while begin < len(tokens) and tokens[begin] in _ARTICLES:
        begin += 1
    end = begin
    while end < len(tokens) and end - begin < DIRECTION_TERM_WORDS and _is_term_word(tokens[end]):
        end += 1
    return tuple(tokens[begin:end])


def _is_term_word(token: str) -> bool:
    return token[0].isalnum() and token not in _TERM_BOUNDARY


_remembered_facts = functools.lru_cache(maxsize=_MEMO_ENTRIES)(_analyse)


def _name_in(name: str, words: frozenset[str]) -> bool:
    if name in words:
        return True
    return any(
        (len(name) >= 3 and word.startswith(name))
        or (len(word) >= 3 and name.startswith(word) and len(name) - len(word) <= 2)
        for word in words
    )


def _opposed_meridiem(mine: frozenset[str], theirs: frozenset[str]) -> bool:
    return bool(mine - theirs) and bool(theirs - mine)


def _opposed(mine: frozenset[str], theirs: frozenset[str]) -> bool:
    only_mine = mine - theirs
    only_theirs = theirs - mine
    return any(
        not _OPPOSITE_OF[word].isdisjoint(only_theirs) for word in only_mine if word in _OPPOSITE_OF
    )


def _negates_by_prefix(mine: _Facts, theirs: _Facts) -> bool:
    """Whether a word of mine is a word of theirs with a negating prefix ("unlock" and
    "lock"), the plain word not in mine and the prefixed one not in theirs."""
    their_stems = {stem for _, stem in theirs.prefixed}
    return any(
        stem in theirs.plain
        and stem not in mine.plain
        and stem not in their_stems
        and _NOT_NEGATING.match(word) is None
        for word, stem in mine.prefixed
    )


def _starts_with(words: tuple[str, ...], head: tuple[str, ...]) -> int:
    """The length of the longest start of ``head`` that ends ``words`` (0 if none)."""
    for size in range(min(len(words), len(head)), 0, -1):
        if words[-size:] == head[:size]:
            return size
    return 0


def _swapped(
    mine: frozenset[tuple[tuple[str, ...], tuple[str, ...]]],
    theirs: frozenset[tuple[tuple[str, ...], tuple[str, ...]]],
) -> bool:
    """Whether both texts join the same two terms in opposite directions: "from Paris to
    Rome" and "from Rome to Paris" (the target of each is the end of the other's
    source)."""
    only_mine = mine - theirs
    only_theirs = theirs - mine
    for source, target in only_mine:
        for their_source, their_target in only_theirs:
            forward = _starts_with(their_source, target)
            backward = _starts_with(source, their_target)
            if forward and backward and target[:forward] != their_target[:backward]:
                return True
    return False


def texts_agree(query: str, stored: str) -> bool:
    """Whether two texts agree on numbers, negation, names, opposites, direction and code (see the
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
    if _opposed(a.words, b.words):
        return False
    if (a.meridiem or b.meridiem) and _opposed_meridiem(a.meridiem, b.meridiem):
        return False
    if (a.prefixed or b.prefixed) and (_negates_by_prefix(a, b) or _negates_by_prefix(b, a)):
        return False
    if a.directions and b.directions and _swapped(a.directions, b.directions):
        return False
    return not (a.comparisons and b.comparisons and _compared_the_other_way(a, b))


def _compared_the_other_way(mine: _Facts, theirs: _Facts) -> bool:
    """Whether both texts compare the same two terms with the same comparative, the
    other way round: "Python faster than Java" and "Java faster than Python"."""
    for comparative in {c for c, _ in mine.comparisons} & {c for c, _ in theirs.comparisons}:
        mine_terms = frozenset(t for c, t in mine.comparisons if c == comparative)
        theirs_terms = frozenset(t for c, t in theirs.comparisons if c == comparative)
        if _swapped(mine_terms, theirs_terms):
            return True
    return False
