"""The agreement check: each rule, what it lets through, and its properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semanticcache._agreement import texts_agree

# Pairs a sentence embedding scores as near-duplicates but whose answers differ.
DISAGREE = [
    # numbers
    ("What is 2 + 2?", "What is 2 + 3?"),
    ("Best phones under 10,000 rupees?", "Best phones under 15,000 rupees?"),
    ("What happened in 1947?", "What happened in 1948?"),
    # negation
    ("Is coffee good for you?", "Is coffee not good for you?"),
    ("Why can I sleep at night?", "Why can't I sleep at night?"),
    ("Why can I sleep at night?", "Why can\u2019t I sleep at night?"),
    ("How do I live with cats?", "How do I live without cats?"),
    # names
    ("What is the capital of France?", "What is the capital of Spain?"),
    ("Who is the CEO of Google?", "Who is the CEO of Apple?"),
    ("How do I learn Python?", "How do I learn?"),
    ('What does "无语" mean?', 'What does "装逼" mean?'),  # uncased scripts
    # opposites
    ("Why is sugar good for dogs?", "Why is sugar bad for dogs?"),
    ("What are arguments for virtue ethics?", "What are arguments against virtue ethics?"),
    ("What is the best thing about you?", "What is the worst thing about you?"),
    ("How to maximize the fraction?", "How to minimize the fraction?"),
    ("Which is bigger, the sun or the earth?", "Which is smaller, the sun or the earth?"),
    ("What time does the store open?", "What time does the store close?"),
    ("Is it safe to drink water before surgery?", "Is it safe to drink water after surgery?"),
    ("Best phones under 10,000 rupees?", "Best phones over 10,000 rupees?"),
    ("How do I enable dark mode?", "How do I disable dark mode?"),
    ("Should I take aspirin before a flight?", "Should I avoid aspirin before a flight?"),
    ("How do I upload files to Drive?", "How do I download files to Drive?"),
    # am / pm after a number, however written
    ("Is the store open at 9 am?", "Is the store open at 9 pm?"),
    ("Is the store open at 9am?", "Is the store open at 9 P.M.?"),
    # a prefix that negates a word the other text holds
    ("How do I lock my laptop keyboard?", "How do I unlock my laptop keyboard?"),
    ("Is it possible to travel in time?", "Is it impossible to travel in time?"),
    ("Why are my votes irrelevant?", "Why are my votes relevant?"),
    ("What makes a profile unattractive?", "What makes a profile attractive?"),
    ("What is a non-profit company?", "What is a profit company?"),
    ("What is a non profit company?", "What is a profit company?"),
    # direction: the same two terms swapped around "to" / "into"
    ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?"),
    ("Flights from Paris to Rome", "Flights from Rome to Paris"),
    ("Flights to Rome from Paris", "Flights from Rome to Paris"),
    ("How do I translate English to Hindi?", "How do I translate Hindi into English?"),
    ("How do I go from New York to Los Angeles?", "How do I go from Los Angeles to New York?"),
    (
        "What is the time difference from Paris to Tokyo?",
        "What is the time difference from Tokyo to Paris?",
    ),
    # comparisons the other way round: the same comparative, the terms swapped
    ("Is Python faster than Java?", "Is Java faster than Python?"),
    ("Is a cat bigger than a dog?", "Is a dog bigger than a cat?"),
    ("Is gold more expensive than silver?", "Is silver more expensive than gold?"),
    ("Why is New York colder than Los Angeles?", "Why is Los Angeles colder than New York?"),
    ("Why use Python rather than Java?", "Why use Java rather than Python?"),
    # code: indentation, fenced blocks, code on one side only
    (
        "Why does this loop print twice?\nfor i in range(3):\n    x = i\n    print(x)",
        "Why does this loop print twice?\nfor i in range(3):\n    x = i\nprint(x)",
    ),
    ("Fix this:\n```\nif a:\n  f()\ng()\n```", "Fix this:\n```\nif a:\n  f()\n  g()\n```"),
    ("What does this do?\n```\nprint(x)\n```", "What does this do?"),
    ("Explain:\n```\nx  = 'a  b'\n```", "Explain:\n```\nx = 'a b'\n```"),
]

# Paraphrases the check must let through (same answer, different wording).
AGREE = [
    ("How do I learn Python quickly?", "What is the fastest way to learn Python?"),
    ("What are some good tips for self study?", "What are the smart tips for self studying?"),
    ("Best phones under 10,000 rupees?", "Which phones under 10000 rupees are best?"),
    ("Are mediums real?", "Are mediums real or not?"),  # "or not" asks both ways
    ("Why shouldn\u2019t I visit?", "Why shouldn't I visit?"),
    ("What is Quora's address?", "What is the address of Quora?"),
    ("What can India do for tourists?", "What can Indians do for tourists?"),
    ("What is the capital of france?", "What is the capital of France?"),
    ("Who is the CEO of Google? Tell Me.", "Who is the CEO of Google?"),  # sentence start
    ("What Is The Best Way To Learn Python?", "how do i learn python"),  # Title Case
    ("It's 11:30, what now?", "It's 11.30, what now?"),
    ("What is \uff15 squared?", "What is 5 squared?"),  # a full-width digit is a digit
    ("", ""),
    # opposites and prefixes on both sides, or only one way round
    ("I am awake at 5 pm, why?", "At 5pm I am awake, why?"),  # "am" without a number
    ("How do I unlock my iPhone?", "How can I unlock an iPhone?"),
    ("What is a non-profit organisation?", "What is a nonprofit organization?"),
    ("What is a non profit organisation?", "What is a non-profit organisation?"),
    ("How do I lock and unlock a file?", "How do I unlock and lock a file?"),
    # direction: the same direction in other words, and relations that are symmetric
    ("Flights from Paris to Rome", "Paris to Rome flights"),
    ("Flights from Paris to Rome", "Flights to Rome from Paris"),
    (
        "How do I convert Celsius to Fahrenheit?",
        "What is the formula to convert Celsius into Fahrenheit?",
    ),
    ("How do I switch from Android to iPhone?", "I want to switch to iPhone from Android"),
    ("Python or Java, which is better?", "Java or Python, which is better?"),
    ("Python vs Java?", "Java vs Python?"),
    (
        "What is the difference between Celsius and Fahrenheit?",
        "What is the difference between Fahrenheit and Celsius?",
    ),
    ("How does Python compare to Java?", "How does Java compare to Python?"),
    ("Compare Python to Java", "Compare Java to Python"),
    # comparisons: the same way round in other words, or both ways round in both
    ("Is Python faster than Java?", "Is python quicker than java?"),
    ("Is Python faster than Java?", "Is Python faster than Java for web apps?"),
    (
        "Is Python faster than Java or Java faster than Python?",
        "Is Java faster than Python or Python faster than Java?",
    ),
    ("Is it cheaper than renting?", "Is it cheaper than renting a flat?"),
    (
        "How do I learn to code, from scratch to job?",
        "How do I learn to code from scratch to a job?",
    ),
    # the same code, other prose around it
    (
        "What does this print?\n```python\nfor i in x:\n    print(i)\n```",
        "What is printed by this?\n```python\nfor i in x:   \n    print(i)\n```\n",
    ),
]


@pytest.mark.parametrize(("a", "b"), DISAGREE)
def test_refuses_what_changes_the_answer(a: str, b: str) -> None:
    assert texts_agree(a, b) is False
    assert texts_agree(b, a) is False


@pytest.mark.parametrize(("a", "b"), AGREE)
def test_lets_paraphrases_through(a: str, b: str) -> None:
    assert texts_agree(a, b) is True
    assert texts_agree(b, a) is True


# A word that starts like "in", "im", "dis", "un"... followed by a word of the other text,
# without negating it: these pairs differ, but not by a negation, so the check leaves
# them to the model.
PREFIX_LOOKALIKES = [
    ("What should I keep inside my car?", "What should I keep on the side of my car?"),
    ("How do I improve my essay?", "How do I prove my essay?"),
    ("Where can I find information on rocks?", "Where can I find the formation of rocks?"),
    ("How do I discover new music?", "How do I cover new music?"),
    ("What is the income of a pilot?", "Where does a pilot come from?"),
    ("How do I get over a disease?", "How do I get over it with ease?"),
    ("How do I unite a team?", "How do I ite a team?"),  # "un" needs four letters after it
]


@pytest.mark.parametrize(("a", "b"), PREFIX_LOOKALIKES)
def test_a_prefix_that_does_not_negate_is_not_a_negation(a: str, b: str) -> None:
    assert texts_agree(a, b) is True
    assert texts_agree(b, a) is True


@pytest.mark.parametrize("text", [a for a, _ in DISAGREE] + [b for _, b in AGREE])
def test_a_text_agrees_with_itself(text: str) -> None:
    assert texts_agree(text, text) is True


@settings(max_examples=400, deadline=None)
@given(st.text(), st.text())
def test_symmetric_and_never_raises(a: str, b: str) -> None:
    assert texts_agree(a, b) is texts_agree(b, a)


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_reflexive_on_any_unicode(text: str) -> None:
    assert texts_agree(text, text) is True


PROSE = ["What", "is", "not", "Paris", "2", "1,000", "good", "bad", "I", "can't", "the", "?"]
DIRECTIONS = [".", "to", "into", "from", "Rome", "New", "York", "convert", "far", ",", "than"]
COMPARISONS = ["faster", "more", "less", "better"]
PREFIXES = ["lock", "unlock", "non", "-", "profit", "nonprofit", "inside", "side"]
WORDS = st.sampled_from(
    [*PROSE, *DIRECTIONS, *COMPARISONS, *PREFIXES, "5pm", "am", "p.m.", "open", "close"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=12), st.lists(WORDS, max_size=12))
def test_symmetric_on_rule_words(a: list[str], b: list[str]) -> None:
    # Random text rarely holds the words the rules look at: this draws from them.
    left, right = " ".join(a), " ".join(b)
    assert texts_agree(left, right) is texts_agree(right, left)
    assert texts_agree(left, left) is True


# Characters whose case mapping or normalization is unusual: dotted / dotless i, sharp s,
# final sigma, title-case digraphs, full-width and Arabic-Indic digits, CJK.
TRICKY = st.text(
    alphabet=st.sampled_from(
        list("aA\u0130\u0131\u00df\u1e9e\u03a3\u03c3\u03c2'\u2019_.,:?!1\u0663\uff150 ")
        + list("\u01c5\u01c6\u7121\u8a9e\u039f\u0394")
    ),
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(TRICKY, TRICKY)
def test_symmetric_and_reflexive_on_tricky_characters(a: str, b: str) -> None:
    assert texts_agree(a, b) is texts_agree(b, a)
    assert texts_agree(a, a) is True
