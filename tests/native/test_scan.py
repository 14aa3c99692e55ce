"""``scan_request`` and ``canonical_json`` against the plain-Python reference.

Examples of every body shape the cache meets, every error kind with its offset, hostile
inputs, and property tests: native == reference on arbitrary documents, re-spelled
documents scan alike, arbitrary bytes are refused with ``RequestBodyError`` only, and
bodies that differ in anything that matters never scan alike.
"""

from __future__ import annotations

import json
import random
from typing import Any

import blake3
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from semanticcache import _native
from semanticcache.errors import NativeInputError, RequestBodyError
from tests.native import ref_scan
from tests.native.ref_scan import RefError

FIELDS = ("query", "query_field", "model", "stream", "params_digest", "context_digest", "turns")


def _h(canonical: str) -> bytes:
    return bytes(blake3.blake3(canonical.encode()).digest())


def _native_fields(r: _native.ScanResult) -> dict[str, Any]:
    return {f: getattr(r, f) for f in FIELDS}


def _ref_fields(r: ref_scan.RefScan) -> dict[str, Any]:
    return {f: getattr(r, f) for f in FIELDS}


def _dumps(doc: Any, *, ensure_ascii: bool = False) -> bytes:
    return json.dumps(doc, ensure_ascii=ensure_ascii).encode()


def assert_agree(body: bytes, **limits: int) -> _native.ScanResult:
    native = _native.scan_request(body, **limits)
    ref = ref_scan.scan_request(body, **limits)
    assert _native_fields(native) == _ref_fields(ref)
    return native


# --- examples ---------------------------------------------------------------------------

EXAMPLES: list[tuple[str, dict[str, Any], str | None, list[tuple[str, str]]]] = [
    (
        "openai chat, string content",
        {
            "model": "gpt-4o",
            "stream": True,
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is HNSW?"},
                {"role": "assistant", "content": "A graph index."},
                {"role": "user", "content": "And IVFFlat?"},
            ],
        },
        "And IVFFlat?",
        [
            ("system", "Be brief."),
            ("user", "What is HNSW?"),
            ("assistant", "A graph index."),
            ("user", "And IVFFlat?"),
        ],
    ),
    (
        "openai chat, content blocks with an image next to text",
        {
            "model": "gpt-4o",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        {"type": "text", "text": "briefly"},
                    ],
                }
            ],
        },
        "Describe\nbriefly",
        [("user", "Describe\nbriefly")],
    ),
    (
        "anthropic system + blocks",
        {
            "model": "claude-sonnet",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "x"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Why?"}]}],
        },
        "Why?",
        [("system", "You are terse."), ("user", "Why?")],
    ),
    (
        "responses api input items",
        {
            "model": "gpt-4.1",
            "input": [
                {"role": "developer", "content": "rules"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "hello"},
                        {"type": "input_image", "image_url": "data:..."},
                    ],
                },
            ],
        },
        "hello",
        [("developer", "rules"), ("user", "hello")],
    ),
    ("prompt list", {"model": "m", "prompt": ["a", "b"], "n": 2}, "a\nb", [("user", "a\nb")]),
    ("prompt string", {"prompt": "once upon"}, "once upon", [("user", "once upon")]),
    ("embeddings input list", {"input": ["x", "y"], "dimensions": 8}, "x\ny", [("user", "x\ny")]),
    ("embeddings token input", {"input": [[1, 2], [3]]}, None, []),
    ("query", {"query": "q", "top_k": 3}, "q", [("user", "q")]),
    (
        "last turn not user",
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
        None,
        [("user", "x"), ("assistant", "y")],
    ),
    ("no lookup field", {"model": "m", "temperature": 1}, None, []),
]


@pytest.mark.parametrize(
    ("doc", "query", "turns"),
    [pytest.param(d, q, t, id=name) for name, d, q, t in EXAMPLES],
)
def test_example_shapes(doc: dict[str, Any], query: str | None, turns: list[Any]) -> None:
    r = assert_agree(_dumps(doc))
    assert r.query == query
    assert r.turns == turns
    assert r.model == (doc["model"] if isinstance(doc.get("model"), str) else None)


def test_digests_follow_the_documented_canonical_form() -> None:
    r = _native.scan_request(
        b'{"model":"m","stream":false,"temperature":0.50,"system":"S",'
        b'"messages":[{"role":"user","content":[{"type":"text","text":"hi"},"x"]}]}'
    )
    assert (r.query, r.query_field, r.model, r.stream) == ("hi\nx", "messages", "m", False)
    assert r.params_digest == _h('{"temperature":5e-1}')
    assert r.context_digest == _h(
        '["messages","S",[{"content":[{"type":"text"},null],"role":"user"}]]'
    )
    assert len(r.params_digest) == len(r.context_digest) == 32


def test_priority_and_parameters() -> None:
    r = assert_agree(b'{"messages":[{"role":"user","content":"m"}],"prompt":"p","query":"q"}')
    assert (r.query_field, r.query) == ("query", "q")
    assert r.params_digest == _h('{"messages":[{"content":"m","role":"user"}],"prompt":"p"}')
    r = assert_agree(b'{"model":1,"stream":"yes"}')
    assert (r.model, r.stream) == (None, None)
    assert r.params_digest == _h('{"model":1e0,"stream":"yes"}')


def test_stream_does_not_split_the_key() -> None:
    a = _native.scan_request(b'{"stream":true,"query":"q"}')
    b = _native.scan_request(b'{"query":"q"}')
    assert (a.stream, b.stream) == (True, None)
    assert (a.params_digest, a.context_digest) == (b.params_digest, b.context_digest)


def test_result_is_frozen_and_turns_are_stable() -> None:
    body = _dumps(EXAMPLES[0][1])
    r = _native.scan_request(body)
    with pytest.raises(AttributeError):
        r.query = "x"  # type: ignore[misc]
    first = r.turns
    first.append(("x", "y"))
    assert r.turns == EXAMPLES[0][3]
    assert "messages" in repr(r)


def test_canonical_json_examples() -> None:
    assert _native.canonical_json(b' {"b": [1, 1.50, -0.0, 1E2], "a": "\\u00e9\\/"} ') == (
        '{"a":"\u00e9/","b":[1e0,15e-1,0,1e2]}'.encode()
    )
    assert (
        _native.canonical_json(b'"\\u001F\\u007f\\ud83d\\ude00"')
        == '"\\u001f\x7f\U0001f600"'.encode()
    )
    assert _native.canonical_json(b"[]") == b"[]"
    assert _native.DEFAULT_MAX_DEPTH == 128
    assert _native.DEFAULT_MAX_BYTES == 10 * 1024 * 1024


# --- errors ------------------------------------------------------------------------------

ERRORS: list[tuple[bytes, str, int]] = [
    (b"", "invalid_json", 0),
    (b'{"a":1,}', "invalid_json", 7),
    (b'{"a" 1}', "invalid_json", 5),
    (b'{"a":[1 2]}', "invalid_json", 8),
    (b'{"a":NaN}', "invalid_json", 5),
    (b'{"a":Infinity}', "invalid_json", 5),
    (b'{"a":01}', "invalid_json", 6),
    (b'{"a":1e1000000001}', "invalid_json", 5),
    (b'{"a":"x\x01"}', "invalid_json", 7),
    (b'{"a":"\\q"}', "invalid_json", 6),
    (b'{"a":1} // comment', "invalid_json", 8),
    (b'\xef\xbb\xbf{"a":1}', "invalid_json", 0),
    (b'{"a":1}\x0c', "invalid_json", 7),
    (b'{"a":"\xff"}', "invalid_utf8", 6),
    (b'{"a":1}\xc3', "invalid_utf8", 7),
    (b'{"a":"\xed\xa0\x80"}', "invalid_utf8", 6),
    (b'{"a":"\\ud800"}', "lone_surrogate", 6),
    (b'{"a":"x\\udc00\\ud800"}', "lone_surrogate", 7),
    (b'{"\\udbff":1}', "lone_surrogate", 2),
    (b" [1]", "not_object", 1),
    (b'"s"', "not_object", 0),
    (b"null", "not_object", 0),
    (b'{"a":1,"a":2}', "duplicate_key", 7),
    (b'{"a":{"b":1,"c":[{"d":0,"\\u0064":1}]}}', "duplicate_key", 24),
]


@pytest.mark.parametrize(("body", "kind", "offset"), ERRORS)
def test_error_kinds_and_offsets(body: bytes, kind: str, offset: int) -> None:
    with pytest.raises(RequestBodyError) as info:
        _native.scan_request(body)
    assert (info.value.kind, info.value.offset) == (kind, offset)
    assert f"byte {offset}" in str(info.value)
    assert isinstance(info.value, NativeInputError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(RefError) as ref:
        ref_scan.scan_request(body)
    assert ref.value.kind == kind


def test_duplicate_key_message_names_the_key() -> None:
    with pytest.raises(RequestBodyError, match='duplicate key "model"') as info:
        _native.scan_request(b'{"model":"a","x":1,"model":"b"}')
    assert info.value.kind == "duplicate_key"
    assert info.value.offset == 19


def test_limits() -> None:
    with pytest.raises(RequestBodyError) as info:
        _native.scan_request(b'{"a":[[1]]}', max_depth=2)
    assert (info.value.kind, info.value.offset) == ("too_deep", 6)
    assert _native.scan_request(b'{"a":[1]}', max_depth=2).query is None
    with pytest.raises(RequestBodyError) as info:
        _native.canonical_json(b"[1, 2]", max_bytes=5)
    assert (info.value.kind, info.value.offset) == ("too_large", 5)
    assert _native.canonical_json(b"[1,2]", max_bytes=5) == b"[1e0,2e0]"
    assert _native.canonical_json(b"[1]", max_bytes=10**40) == b"[1e0]"


@pytest.mark.parametrize("bad", [0, -1, -(10**30)])
@pytest.mark.parametrize("name", ["max_depth", "max_bytes"])
def test_invalid_limits_raise_value_error(name: str, bad: int) -> None:
    with pytest.raises(ValueError, match=name) as info:
        _native.scan_request(b"{}", **{name: bad})
    assert not isinstance(info.value, RequestBodyError)
    with pytest.raises(ValueError, match=name):
        _native.canonical_json(b"{}", **{name: bad})


def test_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        _native.scan_request("{}")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_depth"):
        _native.scan_request(b"{}", max_depth="9")  # type: ignore[arg-type]


# --- hostile input ----------------------------------------------------------------------


def test_hostile_100_mb_string_is_too_large() -> None:
    body = b'{"q":"' + b"a" * 100_000_000 + b'"}'
    with pytest.raises(RequestBodyError) as info:
        _native.scan_request(body)
    assert (info.value.kind, info.value.offset) == ("too_large", _native.DEFAULT_MAX_BYTES)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_hostile_deep_nesting(opener: bytes) -> None:
    body = b'{"x":' + opener * 100_000
    with pytest.raises(RequestBodyError) as info:
        _native.scan_request(body)
    assert info.value.kind == "too_deep"
    assert info.value.offset == 5 + len(opener) * 127
    with pytest.raises(RequestBodyError) as info:
        _native.canonical_json(b"[" * 100_000, max_depth=10**6)
    # No crash with the bound lifted: the unterminated input is just invalid.
    assert (info.value.kind, info.value.offset) == ("invalid_json", 100_000)
    with pytest.raises(RefError, match="too_deep"):
        ref_scan.scan_request(body)


def test_deep_but_allowed_nesting_is_iterative() -> None:
    doc = b"[" * 200_000 + b"]" * 200_000
    assert _native.canonical_json(doc, max_depth=200_000) == doc


def test_hostile_surrogates_and_utf8() -> None:
    for body, kind in [
        (b'{"q":"\\ud83d"}', "lone_surrogate"),
        (b'{"q":"\\ude00\\ud83d"}', "lone_surrogate"),
        (b'{"q":"\\ud83d\\u0041"}', "lone_surrogate"),
        (b'{"q":["ok",{"t":"\\udfff"}]}', "lone_surrogate"),
        (b'{"q":"\xc3\x28"}', "invalid_utf8"),
        (b'{"q":"\xf8\x88\x80\x80\x80"}', "invalid_utf8"),
        (b'{"q":"\xc0\xaf"}', "invalid_utf8"),
        (b'{\xe9"q":1}', "invalid_utf8"),
        (b'{"q":1}\x80', "invalid_utf8"),
    ]:
        with pytest.raises(RequestBodyError) as info:
            _native.scan_request(body)
        assert info.value.kind == kind, body
        with pytest.raises(RefError, match=kind):
            ref_scan.scan_request(body)


def test_hostile_nested_duplicates() -> None:
    body = b'{"messages":[{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]}'
    with pytest.raises(RequestBodyError) as info:
        _native.scan_request(body)
    assert info.value.kind == "duplicate_key"
    assert info.value.offset == body.index(b'"text":"b"')
    wide = "{" + ",".join(f'"k{i}":{i}' for i in range(500)) + ',"k250":0}'
    with pytest.raises(RequestBodyError, match='"k250"'):
        _native.scan_request(wide.encode())


def test_large_body_releases_and_agrees() -> None:
    msgs = [
        {"role": "user" if i % 2 else "assistant", "content": f"turn {i}\n" * 50}
        for i in range(400)
    ]
    body = _dumps({"model": "m", "messages": msgs, "temperature": 0.1})
    assert len(body) > 64 * 1024
    r = assert_agree(body)
    assert r.query == msgs[-1]["content"]


# --- property tests ---------------------------------------------------------------------

SPECIAL_KEYS = [
    "model",
    "stream",
    "system",
    "query",
    "prompt",
    "input",
    "messages",
    "role",
    "content",
    "type",
    "text",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
keys = st.text(max_size=6) | st.sampled_from(SPECIAL_KEYS)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
text_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "input_text", "output_text", "image_url", "x"])},
    optional={"text": st.text(max_size=8) | scalars, "extra": json_values},
)
contents = (
    st.text(max_size=12)
    | st.lists(st.text(max_size=6) | text_parts | json_values, max_size=4)
    | json_values
)
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool"]) | scalars},
    optional={"content": contents, "name": st.text(max_size=4)},
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.text(max_size=6) | scalars,
        "stream": st.booleans() | scalars,
        "system": contents,
        "messages": st.lists(messages | json_values, max_size=4),
        "query": contents,
        "prompt": contents,
        "input": contents | st.lists(messages, max_size=3),
        "temperature": scalars,
        "tools": json_values,
    },
)
documents = chat_bodies | st.dictionaries(keys, json_values, max_size=6)


@given(doc=documents, ascii_only=st.booleans())
def test_native_matches_reference(doc: dict[str, Any], ascii_only: bool) -> None:
    body = _dumps(doc, ensure_ascii=ascii_only)
    assert_agree(body)
    assert _native.canonical_json(body) == ref_scan.canonical_json(body)


@given(doc=json_values)
def test_canonical_json_matches_reference_for_any_value(doc: Any) -> None:
    body = _dumps(doc)
    assert _native.canonical_json(body) == ref_scan.canonical_json(body)


def _spell_number(text: str, rng: random.Random) -> str:
    canon = ref_scan.canonical_number(text)
    if canon == "0":
        return rng.choice(["0", "-0", "0.000", "0e10", "-0.0E-3", "0E+0"])
    sign = "-" if canon.startswith("-") else ""
    digits, exp_text = canon.lstrip("-").split("e")
    exp = int(exp_text)
    options = [
        f"{sign}{digits}e{exp}",
        f"{sign}{digits}E+{exp}" if exp >= 0 else f"{sign}{digits}E{exp}",
        f"{sign}{digits}000e{exp - 3}",
        f"{sign}0.{digits}e{exp + len(digits)}",
    ]
    if 0 <= exp <= 20:
        options.append(f"{sign}{digits}{'0' * exp}")
        options.append(f"{sign}{digits}{'0' * exp}.000")
    if len(digits) > 1:
        options.append(f"{sign}{digits[0]}.{digits[1:]}E{exp + len(digits) - 1}")
    return rng.choice(options)


def _spell_string(s: str, rng: random.Random) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        roll = rng.random()
        if ch in ('"', "\\") or code < 0x20 or roll < 0.3:
            hex_format = rng.choice(["04x", "04X"])
            if code > 0xFFFF:
                code -= 0x10000
                hi, lo = 0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)
                esc = f"\\u{hi:{hex_format}}\\u{lo:{hex_format}}"
            else:
                esc = f"\\u{code:{hex_format}}"
            if ch in ref_scan._ESCAPES and rng.random() < 0.5:
                esc = ref_scan._ESCAPES[ch]
            out.append(esc)
        elif ch == "/" and roll < 0.6:
            out.append("\\/")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _spell(value: Any, rng: random.Random) -> str:
    """Serialize with random key order, white space, escapes and number spelling."""
    ws = rng.choice(["", " ", "\n", "\t", "\r\n  "])
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return _spell_number(json.dumps(value), rng)
    if isinstance(value, str):
        return _spell_string(value, rng)
    if isinstance(value, list):
        return "[" + ws + ("," + ws).join(_spell(v, rng) for v in value) + ws + "]"
    items = list(value.items())
    rng.shuffle(items)
    members = (f"{_spell_string(k, rng)}{ws}:{ws}{_spell(v, rng)}" for k, v in items)
    return "{" + ws + ("," + ws).join(members) + ws + "}"


@given(doc=documents, rng=st.randoms(use_true_random=False))
def test_respelled_documents_scan_alike(doc: dict[str, Any], rng: random.Random) -> None:
    plain = _native.scan_request(_dumps(doc))
    respelled_body = _spell(doc, rng).encode()
    respelled = _native.scan_request(respelled_body)
    assert _native_fields(respelled) == _native_fields(plain)
    assert _native.canonical_json(respelled_body) == _native.canonical_json(_dumps(doc))


KINDS = frozenset(
    {
        "invalid_json",
        "invalid_utf8",
        "lone_surrogate",
        "not_object",
        "too_deep",
        "too_large",
        "duplicate_key",
    }
)
MUTATION_BYTES = b'{}[]",:\\ \t\x00\x1f\x7f\xff\xc3\xa9\xed\xa0u0123456789eE.-+tfnla/'


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    body = bytearray(_dumps(draw(documents)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        at = draw(st.integers(0, len(body)))
        byte = draw(st.sampled_from(MUTATION_BYTES))
        if op == "insert":
            body.insert(at, byte)
        elif at < len(body):
            if op == "delete":
                del body[at]
            else:
                body[at] = byte
    return bytes(body)


@given(body=st.binary(max_size=64) | mutated_bodies())
def test_arbitrary_bytes_are_refused_cleanly(body: bytes) -> None:
    error: RequestBodyError | None = None
    try:
        native = _native.scan_request(body)
    except RequestBodyError as e:
        error = e
    if error is None:
        assert _native_fields(native) == _ref_fields(ref_scan.scan_request(body))
    else:
        assert error.kind in KINDS
        assert error.offset is not None
        assert 0 <= error.offset <= len(body)
        with pytest.raises(RefError):
            ref_scan.scan_request(body)
    try:
        canon = _native.canonical_json(body)
    except RequestBodyError:
        with pytest.raises(RefError):
            ref_scan.canonical_json(body)
    else:
        assert canon == ref_scan.canonical_json(body)


# Small alphabets, so that different bodies are likely to be close to one another.
small_text = st.sampled_from(["", "hi", "h", "i", "a\nb", "a", "b"])
small_parts = st.one_of(
    small_text,
    st.builds(lambda t: {"type": "text", "text": t}, small_text),
    st.builds(lambda t: {"type": "input_text", "text": t}, small_text),
    st.just({"type": "image_url", "image_url": {"url": "u"}}),
    st.just({"type": "text", "text": 1}),
    st.none(),
)
small_content = small_text | st.lists(small_parts, max_size=3) | st.none() | st.just(1)
small_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"])},
    optional={"content": small_content},
)
small_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["a", "b", 1]),
        "stream": st.sampled_from([True, False, "yes"]),
        "system": small_content,
        "messages": st.lists(small_message | small_text, max_size=3),
        "query": small_content,
        "prompt": small_content,
        "input": small_content,
        "temperature": st.sampled_from([0, 1, 1.0, 0.5, None]),
    },
)


def _what_matters(doc: dict[str, Any]) -> bytes:
    """The body minus what the key may drop: a boolean ``stream``, a null ``system``."""
    kept = {
        k: v
        for k, v in doc.items()
        if not (k == "stream" and isinstance(v, bool)) and not (k == "system" and v is None)
    }
    return ref_scan.canonical_json(_dumps(kept))


@given(a=small_bodies, b=small_bodies)
def test_bodies_that_differ_never_scan_alike(a: dict[str, Any], b: dict[str, Any]) -> None:
    ra, rb = _native.scan_request(_dumps(a)), _native.scan_request(_dumps(b))
    key_a = (ra.model, ra.params_digest, ra.context_digest, ra.query)
    key_b = (rb.model, rb.params_digest, rb.context_digest, rb.query)
    if key_a == key_b:
        assert _what_matters(a) == _what_matters(b)


@given(doc=small_bodies)
def test_key_changes_when_one_thing_changes(doc: dict[str, Any]) -> None:
    changed = {**doc, "temperature": "changed"}
    assume(doc.get("temperature") != "changed")
    a, b = _native.scan_request(_dumps(doc)), _native.scan_request(_dumps(changed))
    assert a.params_digest != b.params_digest
