"""What the hostile-input tests of the middleware and the proxy send, and what they
expect the scan to refuse."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from semanticcache import _native
from semanticcache.errors import RequestBodyError
from tests.middleware.conftest import chat_body

__all__ = ["CAP", "HOSTILE", "cache_controls", "header_values", "malformed", "refused"]

# Each example is a real HTTP exchange: a bounded number even in the ci profile.
EXAMPLES = min(settings().max_examples, 25)
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# A cap small enough to pass cheaply in a test: bodies past it must pass through.
CAP = 1024 * 1024


def refused(body: bytes) -> bool:
    """Whether the scan refuses ``body`` or finds no lookup text in it (a bypass)."""
    try:
        return _native.scan_request(body, max_bytes=CAP).query is None
    except RequestBodyError:
        return True


_pieces = st.sampled_from(
    [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"d800", b'"messages"',
     b'"role"', b'"user"', b'"content"', b'"model"', b"1e999", b"null", b" ", b"\xff",
     b"\xc3", b"\xe2\x82", b"\x00"]
)  # fmt: skip


@st.composite
def damaged_chat_bodies(draw: st.DrawFn) -> bytes:
    """A valid chat body, then cut, or with bytes flipped or inserted."""
    text = draw(st.text(max_size=40))
    body = json.dumps(chat_body("m-hostile", text)).encode()
    i = draw(st.integers(0, len(body) - 1))
    how = draw(st.sampled_from(["cut", "flip", "insert"]))
    if how == "cut":
        return body[:i]
    if how == "flip":
        return body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :]
    return body[:i] + draw(st.binary(min_size=1, max_size=4)) + body[i:]


@st.composite
def invalid_utf8_bodies(draw: st.DrawFn) -> bytes:
    """A chat body whose text holds bytes that are not UTF-8."""
    bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"]))
    before = draw(st.text(st.characters(codec="ascii", exclude_characters='"\\'), max_size=20))
    return b'{"model":"m-hostile","messages":[{"role":"user","content":"' + (
        before.encode() + bad + b'"}]}'
    )


malformed = (
    st.binary(max_size=200)
    | st.lists(_pieces, max_size=40).map(b"".join)
    | damaged_chat_bodies()
    | invalid_utf8_bodies()
)


# Header values a client can send: any byte but CR, LF and NUL (the server refuses those).
header_values = st.binary(min_size=1, max_size=60).map(
    lambda b: b.translate(None, b"\r\n\x00").strip(b" \t").decode("latin-1") or "x"
)
cache_controls = (
    header_values
    | st.integers(0, 10**6).map(lambda n: f"max-age={n}")
    | st.integers(4000, 6000).map(lambda n: "max-age=" + "9" * n)  # past int()'s limit
    | st.integers(4000, 6000).map(lambda n: "max-age=" + "0" * n + "1")
    | st.sampled_from(["no-cache", "no-store", "max-age=", 'max-age="5"', "max-age=-1"])
)
