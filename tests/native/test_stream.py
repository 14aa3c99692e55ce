"""SSE parser, StreamTee and the chat-completion assembler/renderer against the
plain-Python references in ``ref_stream``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semanticcache import _native
from semanticcache.errors import StreamFormatError
from tests.native import ref_stream as ref

Ev = tuple[str, str, str | None, int | None]


def native_events(events: list[_native.SseEvent]) -> list[Ev]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def ref_events(events: list[ref.Event]) -> list[Ev]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(body[last:p])
        last = p
    pieces.append(body[last:])
    return pieces


def tee_of(chunks: list[bytes], *, cap: int = 1 << 30, close: bool = True) -> _native.StreamTee:
    tee = _native.StreamTee(cap, sse=True)
    for c in chunks:
        tee.push(c)
    if close:
        tee.close()
    return tee


def ref_tee_of(chunks: list[bytes], *, cap: int = 1 << 30, close: bool = True) -> ref.Tee:
    tee = ref.Tee(cap, sse=True)
    for c in chunks:
        tee.push(c)
    if close:
        tee.close()
    return tee


# --- SSE: examples -----------------------------------------------------------------------


def test_parse_examples() -> None:
    body = (
        b"\xef\xbb\xbf: comment\r\n"
        b"event: add\r\nid: 7\r\nretry: 1500\r\ndata: a\r\ndata:b\r\n\r\n"
        b"data\n\n"
        b"id: x\x00y\rdata: z\r\r"
        b"data: unterminated"
    )
    assert native_events(_native.parse_sse(body)) == [
        ("add", "a\nb", "7", 1500),
        ("message", "", None, None),
        ("message", "z", None, None),
    ]


def test_cr_lf_split_across_pushes_is_one_line_end() -> None:
    tee = tee_of([b"data: a\r", b"\ndata: b\r", b"\n\r"])
    assert native_events(tee.events()) == [("message", "a\nb", None, None)]


def test_invalid_utf8_is_replaced() -> None:
    events = _native.parse_sse(b"data: \xff\xe2\x82 ok\n\n")
    assert events[0].data == "\ufffd\ufffd ok"


def test_event_repr() -> None:
    (ev,) = _native.parse_sse(b"data: x\n\n")
    assert "data=" in repr(ev)
    with pytest.raises(AttributeError):
        ev.data = "y"  # type: ignore[misc]


# --- SSE: properties ---------------------------------------------------------------------

line_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=20,
)
sse_event = st.tuples(
    st.one_of(st.none(), line_text),  # event type
    st.lists(line_text, min_size=1, max_size=4),  # data lines
    st.one_of(st.none(), line_text.filter(lambda s: "\0" not in s)),  # id
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),  # retry
)
line_end = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def serialized_events(draw: st.DrawFn) -> tuple[bytes, list[Ev]]:
    """Events, serialized with random line ends, comments and separators."""
    events = draw(st.lists(sse_event, max_size=6))
    out = ["\ufeff"] if draw(st.booleans()) else []
    expected: list[Ev] = []

    def field(name: str, value: str) -> None:
        sep = ":" if value[:1] != " " and draw(st.booleans()) else ": "
        out.append(name + sep + value + draw(line_end))
        if draw(st.integers(0, 5)) == 0:
            out.append(":" + draw(line_text) + draw(line_end))

    for event, data, eid, retry in events:
        fields: list[tuple[str, str]] = [("data", d) for d in data]
        if event is not None:
            fields.append(("event", event))
        if eid is not None:
            fields.append(("id", eid))
        if retry is not None:
            fields.append(("retry", str(retry)))
        ordered = draw(st.permutations(fields))
        for name, value in ordered:
            field(name, value)
        data = [value for name, value in ordered if name == "data"]
        # After a CR, a blank line written as LF would merge into one CRLF line end.
        blank = st.sampled_from(["\r", "\r\n"]) if out and out[-1].endswith("\r") else line_end
        out.append(draw(blank))
        expected.append((event or "message", "\n".join(data), eid, retry))
    return "".join(out).encode(), expected


@given(case=serialized_events(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_events_round_trip_any_chunking(case: tuple[bytes, list[Ev]], cuts: list[int]) -> None:
    body, expected = case
    assert native_events(_native.parse_sse(body)) == expected
    assert ref_events(ref.parse_sse(body)) == expected
    chunks = split(body, cuts)
    tee = tee_of(chunks)
    assert native_events(tee.events()) == expected
    assert tee.getvalue() == body
    assert ref_events(ref_tee_of(chunks).events()) == expected


@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_arbitrary_bytes_match_reference(body: bytes, cuts: list[int]) -> None:
    expected = ref_events(ref.parse_sse(body))
    assert native_events(_native.parse_sse(body)) == expected
    chunks = split(body, cuts)
    tee, rtee = tee_of(chunks), ref_tee_of(chunks)
    assert native_events(tee.events()) == expected
    assert tee.end_state == rtee.end_state
    assert tee.complete == rtee.complete


sse_alphabet = st.sampled_from(
    [
        b"data",
        b"event",
        b"id",
        b"retry",
        b":",
        b" ",
        b"\r",
        b"\n",
        b"\r\n",
        b"x",
        b"5",
        b"\x00",
        b"\xef\xbb\xbf",
        b"\xef",
        b"\xff",
        b"[DONE]",
        b"error",
        b'{"error":1}',
        b'{"choices":[{"index":0,"finish_reason":"stop"}]}',
        b'{"choices":[{"index":1,"finish_reason":null}]}',
    ]
)


@given(parts=st.lists(sse_alphabet, max_size=40), cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_sse_shaped_noise_matches_reference(parts: list[bytes], cuts: list[int]) -> None:
    body = b"".join(parts)
    expected = ref_events(ref.parse_sse(body))
    assert native_events(_native.parse_sse(body)) == expected
    chunks = split(body, cuts)
    tee, rtee = tee_of(chunks), ref_tee_of(chunks)
    assert native_events(tee.events()) == expected
    assert (tee.end_state, tee.complete) == (rtee.end_state, rtee.complete)


# --- tee ---------------------------------------------------------------------------------


@given(
    chunks=st.lists(st.binary(max_size=64), max_size=20),
    cap=st.integers(0, 600),
    sse=st.booleans(),
)
def test_tee_cap_matches_reference(chunks: list[bytes], cap: int, sse: bool) -> None:
    tee, rtee = _native.StreamTee(cap, sse=sse), ref.Tee(cap, sse=sse)
    total = 0
    for c in chunks:
        assert tee.push(c) == rtee.push(c)
        total += len(c)
        assert tee.nbytes == total
        assert tee.overflowed == rtee.overflowed
    body = b"".join(chunks)
    assert tee.overflowed == (len(body) > cap)
    # All or nothing: never a prefix of the body.
    assert tee.getvalue() == (b"" if tee.overflowed else body)
    assert tee.end_state == ("open" if sse else "not_sse")
    tee.close()
    rtee.close()
    assert (tee.end_state, tee.complete) == (rtee.end_state, rtee.complete)
    if tee.overflowed:
        assert not tee.complete


def test_tee_rejects_push_after_close_and_negative_cap() -> None:
    tee = _native.StreamTee(10)
    tee.close()
    with pytest.raises(ValueError, match="closed"):
        tee.push(b"x")
    with pytest.raises(ValueError, match="max_bytes"):
        _native.StreamTee(-1)


def test_tee_large_chunk_detached_path() -> None:
    big = b"data: " + b"a" * 200_000 + b"\n\ndata: [DONE]\n\n"
    tee = tee_of([big], cap=1 << 20)
    assert tee.complete
    assert len(tee.events()[0].data) == 200_000
    assert tee.getvalue() == big


def test_tee_overflow_is_never_complete() -> None:
    tee = tee_of([b"data: [DONE]\n\n", b"x" * 100], cap=20)
    assert tee.overflowed
    assert tee.end_state == "truncated"
    assert not tee.complete
    with pytest.raises(StreamFormatError) as exc:
        tee.assemble_chat_completion()
    assert exc.value.kind == "not_complete"


# --- chat completions: generators ---------------------------------------------------------

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
small_int = st.integers(0, 10**9)
token = st.fixed_dictionaries(
    {"token": text, "logprob": st.floats(-100, 0, allow_nan=False), "bytes": st.none()}
)
tool_call = st.fixed_dictionaries(
    {"function": st.fixed_dictionaries({"name": text, "arguments": text})},
    optional={"id": text, "type": st.just("function")},
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": draw(st.sampled_from(["assistant", "tool", "x"])),
        "content": draw(st.one_of(st.none(), text)),
    }
    if draw(st.booleans()):
        msg["refusal"] = draw(text)
    if draw(st.booleans()):
        msg["tool_calls"] = draw(st.lists(tool_call, min_size=1, max_size=3))
    if draw(st.integers(0, 4)) == 0:
        msg["function_call"] = {"name": draw(text), "arguments": draw(text)}
    return msg


@st.composite
def completions(draw: st.DrawFn) -> dict[str, Any]:
    indices = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3, unique=True))
    choices = []
    for i in sorted(indices):
        lp = None
        if draw(st.booleans()):
            lp = {
                "content": draw(st.one_of(st.none(), st.lists(token, max_size=3))),
                "refusal": draw(st.one_of(st.none(), st.lists(token, max_size=2))),
            }
        choices.append(
            {
                "index": i,
                "message": draw(messages()),
                "logprobs": lp,
                "finish_reason": draw(
                    st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls"]))
                ),
            }
        )
    c: dict[str, Any] = {
        "id": draw(text),
        "object": "chat.completion",
        "created": draw(small_int),
        "model": draw(text),
        "choices": choices,
    }
    if draw(st.booleans()):
        c["system_fingerprint"] = draw(text)
    if draw(st.booleans()):
        c["service_tier"] = draw(st.sampled_from(["default", "flex"]))
    if draw(st.booleans()):
        c["usage"] = {"prompt_tokens": draw(small_int), "completion_tokens": draw(small_int)}
    return c


@given(c=completions())
def test_assemble_render_round_trip(c: dict[str, Any]) -> None:
    body = json.dumps(c).encode()
    sse = _native.render_chat_completion_sse(body, include_usage=True)
    assert json.loads(_native.assemble_chat_completion(sse)) == c
    assert ref.assemble_chat_completion(sse) == c
    # The reference renderer gives a stream that assembles alike (bytes may differ only
    # in JSON spelling and key order).
    ref_sse = ref.render_chat_completion_sse(c, include_usage=True)
    assert json.loads(_native.assemble_chat_completion(ref_sse)) == c
    parsed = [json.loads(e.data) for e in _native.parse_sse(sse) if e.data != "[DONE]"]
    ref_parsed = [json.loads(e.data) for e in ref.parse_sse(ref_sse) if e.data != "[DONE]"]
    assert parsed == ref_parsed


@given(c=completions())
def test_render_without_usage_drops_only_usage(c: dict[str, Any]) -> None:
    sse = _native.render_chat_completion_sse(json.dumps(c).encode())
    want = {k: v for k, v in c.items() if k != "usage"}
    assert json.loads(_native.assemble_chat_completion(sse)) == want


def pieces(draw: st.DrawFn, s: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(s)), max_size=3)))
    out, last = [], 0
    for p in cuts:
        out.append(s[last:p])
        last = p
    out.append(s[last:])
    return out


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A stream in the shapes providers send (pieces, interleaved choices, repeated ids),
    and the completion it should assemble to."""
    c = draw(completions())
    head = {
        "id": c["id"],
        "object": "chat.completion.chunk",
        "created": c["created"],
        "model": c["model"],
    }
    per_choice: list[list[dict[str, Any]]] = []
    for ch in c["choices"]:
        msg, i = ch["message"], ch["index"]
        deltas: list[dict[str, Any]] = [
            {"index": i, "delta": {"role": msg["role"]}, "finish_reason": None}
        ]
        if msg["content"] is not None:
            for p in pieces(draw, msg["content"]):
                deltas.append({"index": i, "delta": {"content": p}})
        for n, call in enumerate(msg.get("tool_calls", [])):
            first = {"index": n, "function": {"name": call["function"]["name"]}}
            for key in ("id", "type"):
                if key in call:
                    first[key] = call[key]
            deltas.append({"index": i, "delta": {"tool_calls": [first]}})
            for p in pieces(draw, call["function"]["arguments"]):
                again = {"index": n, "function": {"arguments": p}}
                if "id" in call and draw(st.booleans()):
                    again["id"] = call["id"]  # some servers repeat it
                deltas.append({"index": i, "delta": {"tool_calls": [again]}})
        if "function_call" in msg:
            fc = msg["function_call"]
            deltas.append({"index": i, "delta": {"function_call": {"name": fc["name"]}}})
            for p in pieces(draw, fc["arguments"]):
                deltas.append({"index": i, "delta": {"function_call": {"arguments": p}}})
        if "refusal" in msg:
            for p in pieces(draw, msg["refusal"]):
                deltas.append({"index": i, "delta": {"refusal": p}})
        lp = ch["logprobs"]
        if lp is not None:
            deltas[0]["logprobs"] = {"content": lp["content"], "refusal": None}
            deltas[-1].setdefault("logprobs", {"content": None, "refusal": lp["refusal"]})
            if deltas[-1] is deltas[0]:
                deltas[0]["logprobs"] = lp
        deltas.append({"index": i, "delta": {}, "finish_reason": ch["finish_reason"]})
        per_choice.append(deltas)
    # Interleave the choices' deltas, keeping each choice's own order.
    order = draw(st.permutations([k for k, d in enumerate(per_choice) for _ in d]))
    cursors = [0] * len(per_choice)
    chunks = []
    for k in order:
        chunks.append(dict(head, choices=[per_choice[k][cursors[k]]]))
        cursors[k] += 1
    if not chunks or "usage" in c:
        chunks.append(dict(head, choices=[], usage=c.get("usage")))
    for chunk in chunks:
        for key in ("system_fingerprint", "service_tier"):
            if key in c:
                chunk[key] = c[key]
    body = b"".join(b"data: " + json.dumps(ch).encode() + b"\n\n" for ch in chunks)
    return body + b"data: [DONE]\n\n", c


@given(case=streams(), cuts=st.lists(st.integers(0, 100_000), max_size=5))
def test_assembler_matches_reference_on_provider_streams(
    case: tuple[bytes, dict[str, Any]], cuts: list[int]
) -> None:
    body, c = case
    assert json.loads(_native.assemble_chat_completion(body)) == c
    assert ref.assemble_chat_completion(body) == c
    tee = tee_of(split(body, cuts))
    assert tee.end_state == "done"
    assert json.loads(tee.assemble_chat_completion()) == c
    # Render what was assembled: it assembles to the same thing again.
    again = _native.render_chat_completion_sse(
        _native.assemble_chat_completion(body), include_usage=True
    )
    assert json.loads(_native.assemble_chat_completion(again)) == c


@given(case=streams(), data=st.data())
def test_end_state_at_every_cut(case: tuple[bytes, dict[str, Any]], data: st.DataObject) -> None:
    body, _ = case
    cut = data.draw(st.integers(0, len(body)))
    head = body[:cut]
    tee, rtee = tee_of([head]), ref_tee_of([head])
    assert (tee.end_state, tee.complete) == (rtee.end_state, rtee.complete)
    if cut == len(body):
        assert tee.end_state == "done"
    elif tee.complete:
        # Clean before the [DONE] only when every choice had sent its finish_reason.
        assert tee.end_state == "finished"
        assert head.endswith(b"\n\n")


def test_end_state_every_cut_of_a_small_stream() -> None:
    c = {
        "id": "i",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    body = _native.render_chat_completion_sse(json.dumps(c).encode())
    finished_at = body.index(b"data: [DONE]")
    states = [tee_of([body[:cut]]).end_state for cut in range(len(body) + 1)]
    assert states[-1] == "done"
    assert states[finished_at] == "finished"
    assert {s for i, s in enumerate(states) if i not in (finished_at, len(body))} == {"truncated"}


@pytest.mark.parametrize(
    "body",
    [
        b"event: error\ndata: {}\n\ndata: [DONE]\n\n",
        b'data: {"error": {"message": "overloaded"}}\n\ndata: [DONE]\n\n',
    ],
)
def test_error_end_state(body: bytes) -> None:
    tee = tee_of([body])
    assert tee.end_state == "error"
    assert not tee.complete
    with pytest.raises(StreamFormatError) as exc:
        _native.assemble_chat_completion(body)
    assert exc.value.kind == "not_complete"


def test_end_state_open_and_not_sse() -> None:
    assert tee_of([b"data: [DONE]\n\n"], close=False).end_state == "open"
    plain = _native.StreamTee(10)
    plain.close()
    assert plain.end_state == "not_sse"
    assert not plain.complete


# --- chat completions: errors -------------------------------------------------------------


CHUNK = {"id": "a", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}


def sse_of(*chunks: Any) -> bytes:
    parts = [
        b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode()) + b"\n\n"
        for c in chunks
    ]
    return b"".join(parts) + b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"data: {}\n\n", "not_complete"),
        (b"data: [DONE]\n\n", "no_chunks"),
        (sse_of(b"{nope"), "not_json"),
        (sse_of([1]), "bad_chunk"),
        (sse_of(dict(CHUNK, object="chat.completion")), "bad_chunk"),
        (sse_of(CHUNK, dict(CHUNK, id="b")), "mixed_ids"),
        (sse_of(dict(CHUNK, choices=[{"index": 0, "delta": {"content": 1}}])), "bad_chunk"),
        (sse_of(dict(CHUNK, choices=[{"index": -1}])), "bad_chunk"),
        (sse_of(dict(CHUNK, created="1")), "bad_chunk"),
    ],
)
def test_assemble_errors(body: bytes, kind: str) -> None:
    with pytest.raises(StreamFormatError) as exc:
        _native.assemble_chat_completion(body)
    assert exc.value.kind == kind
    with pytest.raises(StreamFormatError) as rexc:
        ref.assemble_chat_completion(body)
    assert rexc.value.kind == kind


def test_not_json_error_has_offset() -> None:
    body = b": hi\n" + sse_of(b"{nope")
    with pytest.raises(StreamFormatError) as exc:
        _native.assemble_chat_completion(body)
    assert exc.value.offset == 5
    assert "byte 5" in str(exc.value)


@pytest.mark.parametrize(
    "completion",
    [
        b"nope",
        b"[]",
        b'{"object": "chat.completion"}',
        b'{"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": {}}',
        b'{"id": "x", "object": "chat.completion", "created": 1, "model": "m",'
        b' "choices": [{"index": 0}]}',
    ],
)
def test_render_errors(completion: bytes) -> None:
    with pytest.raises(StreamFormatError) as exc:
        _native.render_chat_completion_sse(completion)
    assert exc.value.kind in ("not_json", "bad_completion")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | text,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "object",
                    "created",
                    "model",
                    "choices",
                    "index",
                    "message",
                    "delta",
                    "content",
                    "tool_calls",
                    "usage",
                    "logprobs",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


VALID = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
}


@given(
    value=json_values,
    key=st.sampled_from(["id", "created", "model", "choices", "usage", "system_fingerprint"]),
    inner=st.sampled_from(["index", "message", "logprobs", "finish_reason"]),
    msg_key=st.sampled_from(["role", "content", "refusal", "tool_calls", "function_call"]),
)
def test_render_garbage_raises_only_stream_format_error(
    value: Any, key: str, inner: str, msg_key: str
) -> None:
    choice = dict(VALID["choices"][0], **{inner: value})  # type: ignore[index]
    message = {"role": "assistant", msg_key: value}
    for doc in (
        value,
        dict(VALID, **{key: value}),
        dict(VALID, choices=[choice]),
        dict(VALID, choices=[dict(choice, message=message)]),
    ):
        try:
            out = _native.render_chat_completion_sse(json.dumps(doc).encode())
        except StreamFormatError:
            continue
        # Whatever renders must assemble again.
        assert json.loads(_native.assemble_chat_completion(out))["id"] == doc["id"]


@given(values=st.lists(json_values, max_size=4), raw=st.binary(max_size=50))
def test_assemble_garbage_matches_reference(values: list[Any], raw: bytes) -> None:
    for body in (sse_of(*values), raw, sse_of(*[dict(CHUNK, choices=v) for v in values])):
        try:
            got: Any = json.loads(_native.assemble_chat_completion(body))
        except StreamFormatError as e:
            got = e.kind
        try:
            want: Any = ref.assemble_chat_completion(body)
        except StreamFormatError as e:
            want = e.kind
        assert got == want
