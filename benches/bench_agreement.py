"""The agreement check (``texts_agree``) per pair: it runs once per semantic candidate,
on the lookup's path, so its budget is far below a lookup's (hundreds of microseconds).

``fresh``: texts never seen before (the memo of recent short texts' facts is cleared
before each call), what a new question and a new candidate cost. ``remembered``: both
texts analysed before (a popular entry, a question asked again). The 1 KB prompt is
never remembered (past the memo's 512 characters).
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from semanticcache import _agreement as agreement
from semanticcache._agreement import texts_agree

PAIRS = {
    # A typical short question pair of the quality benchmark (about 8 words each).
    "short": (
        "What are some good tips for self study?",
        "What are the smart tips for self studying?",
        True,
    ),
    # A long one: names, numbers, a currency sign (about 20 words each).
    "long": (
        "How can ₹2000 notes have signature of Urjit Patel, the newly appointed RBI "
        "governor just 2 months back?",
        "How can Rs 2000 notes have signature of Urjit Patel, the newly appointed RBI "
        "governor just 2 months Back?",
        False,
    ),
    # A chat prompt of about 1 KB.
    "1KB": (
        "Summarize the following for a busy reader. " * 23,
        "Summarise the following for a busy reader. " * 23,
        True,
    ),
}


def _fresh(a: str, b: str) -> bool:
    agreement._remembered_facts.cache_clear()
    return texts_agree(a, b)


@pytest.mark.parametrize("size", list(PAIRS))
def test_texts_agree_fresh(benchmark: BenchmarkFixture, size: str) -> None:
    benchmark.group = "agreement"
    a, b, expected = PAIRS[size]
    assert benchmark(_fresh, a, b) is expected


@pytest.mark.parametrize("size", list(PAIRS))
def test_texts_agree_remembered(benchmark: BenchmarkFixture, size: str) -> None:
    benchmark.group = "agreement"
    a, b, expected = PAIRS[size]
    assert benchmark(texts_agree, a, b) is expected
