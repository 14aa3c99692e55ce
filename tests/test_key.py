"""CacheKey: the partition digest covers every exact field and nothing else collides."""

from __future__ import annotations

import hashlib
import json
import time
import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from semanticcache import CacheKey, ConfigurationError
from semanticcache._key import (
    MAX_SCOPE_BYTES,
    db_text,
    lookup_digest,
    normalize_lookup_text,
    partition_digest,
)
from semanticcache._native import scan_request

D1 = hashlib.blake2b(b"params-1", digest_size=32).digest()
D2 = hashlib.blake2b(b"params-2", digest_size=32).digest()

BASE = {
    "scope": "tenant-a",
    "route": "/v1/chat/completions",
    "model": "gpt-x",
    "params_digest": D1,
    "context_digest": D2,
}


def test_same_fields_same_partition_and_text_is_not_part_of_it() -> None:
    a = CacheKey("What is the capital of France?", **BASE)  # type: ignore[arg-type]
    b = CacheKey("How do I bake bread?", **BASE)  # type: ignore[arg-type]
    assert a.partition == b.partition
    assert len(a.partition) == 32
    assert a.text_digest != b.text_digest


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("scope", "tenant-b"),
        ("route", "/v1/completions"),
        ("model", "gpt-y"),
        ("model", None),
        ("params_digest", D2),
        ("context_digest", D1),
    ],
)
def test_every_exact_field_splits_the_partition(field: str, other: object) -> None:
    base = CacheKey("q", **BASE)  # type: ignore[arg-type]
    changed = CacheKey("q", **{**BASE, field: other})  # type: ignore[arg-type]
    assert base.partition != changed.partition


def test_length_prefix_keeps_field_boundaries() -> None:
    assert partition_digest(scope="ab", route="c") != partition_digest(scope="a", route="bc")
    assert partition_digest(params_digest=b"\x01", context_digest=b"") != partition_digest(
        params_digest=b"", context_digest=b"\x01"
    )


def test_missing_model_and_empty_model_partition_apart() -> None:
    assert partition_digest(model=None) != partition_digest(model="")


_field = st.text(max_size=12)
_digest = st.binary(max_size=8)
_fields = st.tuples(_field, _field, st.none() | _field, _digest, _digest)


@given(_fields, _fields)
def test_distinct_fields_never_share_a_partition(
    a: tuple[str, str, str | None, bytes, bytes], b: tuple[str, str, str | None, bytes, bytes]
) -> None:
    def digest(f: tuple[str, str, str | None, bytes, bytes]) -> bytes:
        return partition_digest(
            scope=f[0], route=f[1], model=f[2], params_digest=f[3], context_digest=f[4]
        )

    assert (digest(a) == digest(b)) == (a == b)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  What is\tthe  capital\n of France? ", "What is the capital of France?"),
        ("Cafe\u0301", "Caf\u00e9"),  # NFD -> NFC
        ("Case Kept", "Case Kept"),
    ],
)
def test_lookup_text_normalization(raw: str, normalized: str) -> None:
    assert normalize_lookup_text(raw) == normalized
    assert lookup_digest(raw) == lookup_digest(normalized)


def test_case_changes_the_exact_digest() -> None:
    assert lookup_digest("Paris") != lookup_digest("paris")


@given(st.text())
def test_any_text_has_a_digest_and_a_db_form(text: str) -> None:
    assert len(lookup_digest(text)) == 32
    stored = db_text(text)
    assert "\x00" not in stored
    stored.encode("utf-8")  # never raises: lone surrogates are replaced


def test_lone_surrogates_digest_apart() -> None:
    assert lookup_digest("a\ud800") != lookup_digest("a\ud801")


def test_scope_too_long_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="scope"):
        CacheKey("q", scope="x" * (MAX_SCOPE_BYTES + 1))
    assert CacheKey("q", scope="x" * MAX_SCOPE_BYTES).scope


@pytest.mark.parametrize(
    "kwargs",
    [{"scope": b"bytes"}, {"route": 1}, {"model": 3}, {"params_digest": "str"}],
)
def test_wrong_field_types_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="CacheKey"):
        CacheKey("q", **kwargs)  # type: ignore[arg-type]


def test_from_scan_uses_the_native_digests() -> None:
    scan = scan_request(
        b'{"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}'
    )
    key = CacheKey.from_scan(scan, scope="t", route="/chat")
    assert key is not None
    assert key.text == "Hi"
    assert key.partition == partition_digest(
        scope="t",
        route="/chat",
        model="m",
        params_digest=scan.params_digest,
        context_digest=scan.context_digest,
    )
    hotter = scan_request(
        b'{"model": "m", "temperature": 1, "messages": [{"role": "user", "content": "Hi"}]}'
    )
    other = CacheKey.from_scan(hotter, scope="t", route="/chat")
    assert other is not None
    assert other.partition != key.partition


def test_from_scan_without_lookup_text_is_none() -> None:
    assert CacheKey.from_scan(scan_request(b'{"model": "m"}')) is None


# --- code keeps its white space ----------------------------------------------------------

LOOP_INSIDE = "Why does this print 3 times?\nfor i in range(3):\n    x = i\n    print(x)\n"
LOOP_AFTER = "Why does this print 3 times?\nfor i in range(3):\n    x = i\nprint(x)\n"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (LOOP_INSIDE, LOOP_AFTER),  # print inside vs after the loop
        ("for i in x:\n\tf(i)\n\tg(i)", "for i in x:\n\tf(i)\ng(i)"),  # tab indentation
        ("if a:\n f()\ng()", "if a:\n f()\n g()"),  # one space after a block opener
        ("Fix:\n```\nprint('a  b')\n```", "Fix:\n```\nprint('a b')\n```"),  # fenced
        ("~~~\nx = 1\n  y\n~~~", "~~~\nx = 1\ny\n~~~"),  # tilde fence, indentation
        ("```py\na\nb\n```", "```py\na b\n```"),  # a line break inside a fence
        ("```\nunclosed\n    block", "```\nunclosed\nblock"),  # runs to the end
    ],
)
def test_code_white_space_changes_the_exact_digest(a: str, b: str) -> None:
    assert normalize_lookup_text(a) != normalize_lookup_text(b)
    assert lookup_digest(a) != lookup_digest(b)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        # Trailing white space of a code line, CRLF and runs of blank lines do not count.
        ("for i in x:  \r\n    f(i)\t\r\n\r\n\r\n    g(i)\n", "for i in x:\n    f(i)\n\n    g(i)"),
        # Prose around a fenced block still collapses; the block is kept as it is.
        (
            "Explain   this\n code:\n```python\nfor i in x:\n  print(i,  1)\n```\nthanks  a lot",
            "Explain this code:\n```python\nfor i in x:\n  print(i,  1)\n```\nthanks a lot",
        ),
        # Inline triple backticks open no block.
        ("use ```x``` here\n and   there", "use ```x``` here and there"),
        # One space after an ordinary line is wrapped prose.
        ("the capital\n of   France", "the capital of France"),
    ],
)
def test_code_normalization(raw: str, normalized: str) -> None:
    assert normalize_lookup_text(raw) == normalized


_prose_words = st.lists(st.text(st.characters(categories=["L", "N"]), min_size=1), min_size=1)
_prose_space = st.sampled_from([" ", "  ", "\t", "\n", " \n", "\n\n", "\u3000"])


@given(words=_prose_words, spaces=st.lists(_prose_space, min_size=1), data=st.data())
def test_prose_white_space_still_collapses(
    words: list[str], spaces: list[str], data: st.DataObject
) -> None:
    # Words separated by any white space, never two or more spaces at a line start.
    parts = [words[0]]
    for word in words[1:]:
        parts += [data.draw(st.sampled_from(spaces)), word]
    expected = unicodedata.normalize("NFC", " ".join(words))
    assert normalize_lookup_text("".join(parts)) == expected


_code_lines = st.lists(
    st.tuples(
        st.sampled_from(["", "  ", "    ", "\t", " "]), st.sampled_from(["f(x)", "g:", "y = 1", ""])
    ),
    min_size=2,
    max_size=8,
)


# Pieces of text layout: prose, indentation, block openers, fences, line breaks.
_layout_pieces = st.sampled_from(
    [*"ab:{( \t\n\r`~\\", " a", "\n ", "\n  ", "\r\n", "```", "~~~", "    ", "\u3000", "\x0b"]
)


@given(
    text=st.lists(_layout_pieces, max_size=30).map("".join)
    | _code_lines.map(lambda lines: "\n".join(indent + body for indent, body in lines))
    | st.text()
)
def test_normalization_is_idempotent_and_keeps_the_digest(text: str) -> None:
    once = normalize_lookup_text(text)
    assert normalize_lookup_text(once) == once
    assert lookup_digest(once) == lookup_digest(text)


@given(lines=_code_lines, at=st.integers(min_value=1), extra=st.sampled_from(["  ", "\t"]))
def test_changing_an_indented_lines_indentation_changes_the_key(
    lines: list[tuple[str, str]], at: int, extra: str
) -> None:
    # Line 0 reads "a:", so every later line's indentation is structure.
    text_lines = ["a:"] + [indent + body for indent, body in lines]
    i = 1 + at % len(lines)
    assume(text_lines[i].strip() != "")
    changed = [*text_lines]
    changed[i] = extra + changed[i]
    assert lookup_digest("\n".join(text_lines)) != lookup_digest("\n".join(changed))


def test_normalization_is_linear_on_hostile_layouts() -> None:
    # Many short lines, many fences, long indentation: each costs one pass per line.
    for text in (
        "a:\n" + "  x\n" * 200_000,
        "```\n" * 200_000,
        "x" + " " * 1_000_000 + "\n  y",
        "`" * 1_000_000 + "\n" + "~" * 1_000_000,
    ):
        start = time.perf_counter()
        normalize_lookup_text(text)
        assert time.perf_counter() - start < 5.0


def test_scanned_code_keeps_its_indentation_into_the_key() -> None:
    # The native scan hands the lookup text over as it is: the key alone normalises it.
    def key(text: str) -> CacheKey:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})
        found = CacheKey.from_scan(scan_request(body.encode()))
        assert found is not None
        assert found.text == text
        return found

    assert key(LOOP_INSIDE).text_digest != key(LOOP_AFTER).text_digest
    assert key("a  b\n c").text_digest == key("a b c").text_digest
