"""Typed stubs for the Rust extension ``semanticcache._native``.

Private: import what you need from ``semanticcache`` instead. Every function here has a
plain-Python reference in ``tests/native/`` (``ref_*.py``) that property tests hold it to.
Errors are the classes of :mod:`semanticcache.errors`.
"""

from typing import Final, final

__version__: Final[str]

DEFAULT_MAX_DEPTH: Final[int]
"""Nesting bound of :func:`scan_request` and :func:`canonical_json` (objects + arrays)."""

DEFAULT_MAX_BYTES: Final[int]
"""Input size bound of :func:`scan_request` and :func:`canonical_json` (10 MiB)."""

# --- request body scan -----------------------------------------------------------------

@final
class ScanResult:
    """What the cache needs from one JSON request body, found in one pass.

    Digests are 32-byte BLAKE3 hashes of canonical JSON (see docs/native.md); two bodies
    that differ only in key order, insignificant white space, string escapes or number
    spelling (``1`` / ``1.0`` / ``1e0``) scan alike.
    """

    @property
    def query(self) -> str | None:
        """The lookup text: the latest user turn, or ``query`` / ``prompt`` / ``input``.

        ``None`` when the lookup field is absent or has no text to match (for example the
        last message is not a user turn); the request can then only be matched exactly.
        """

    @property
    def query_field(self) -> str | None:
        """Which top-level key held the lookup text: ``query``, ``prompt``, ``input``,
        ``messages``; ``None`` when none of them is present."""

    @property
    def model(self) -> str | None:
        """Top-level ``model`` when it is a string."""

    @property
    def stream(self) -> bool | None:
        """Top-level ``stream`` when it is a boolean."""

    @property
    def params_digest(self) -> bytes:
        """Digest of every other top-level parameter (not the lookup field, ``system``,
        ``model`` or ``stream``)."""

    @property
    def context_digest(self) -> bytes:
        """Digest of the conversation around the lookup text: ``system``, the earlier
        turns, and the latest turn with its text taken out."""

    @property
    def turns(self) -> list[tuple[str, str]]:
        """Role-tagged text of the conversation, oldest first, ``system`` first when given.

        Built on first access only (the scan itself creates no Python objects for it).
        """

def scan_request(body: bytes, *, max_depth: int = ..., max_bytes: int = ...) -> ScanResult:
    """Scan a JSON request body in one pass.

    Raises :class:`~semanticcache.errors.RequestBodyError` for invalid JSON or UTF-8, a
    lone surrogate escape, a top level that is not an object, nesting deeper than
    ``max_depth``, a body over ``max_bytes``, or a duplicate key in any object.
    Releases the GIL for large bodies.
    """

def canonical_json(body: bytes, *, max_depth: int = ..., max_bytes: int = ...) -> bytes:
    """The canonical form of any JSON document (sorted keys, minimal escapes, normalized
    numbers, no white space), with the same errors as :func:`scan_request` except that
    any top-level value is accepted."""

# --- keyed digests for log fields ------------------------------------------------------

def hmac_sha256(key: bytes, data: bytes | str) -> bytes:
    """HMAC-SHA256 of ``data`` (``str`` is encoded as UTF-8) under ``key``."""

def hmac_sha256_hex(key: bytes, data: bytes | str, length: int = 64) -> str:
    """Lowercase hex HMAC-SHA256, cut to ``length`` hex digits (1..64)."""

# --- streaming tee buffer and Server-Sent Events ---------------------------------------

@final
class SseEvent:
    """One dispatched Server-Sent Event."""

    @property
    def event(self) -> str:
        """Event type; ``"message"`` when the stream gave none."""

    @property
    def data(self) -> str:
        """Data lines joined with ``\\n``."""

    @property
    def id(self) -> str | None: ...
    @property
    def retry(self) -> int | None: ...

@final
class StreamTee:
    """Copies a response body as it is forwarded, up to ``max_bytes``.

    ``push`` never blocks and never raises on size: past the cap it stops copying and
    sets ``overflowed``. When ``sse`` is true it also parses the stream as Server-Sent
    Events across arbitrary chunk boundaries and tracks how the stream ended.
    """

    def __init__(self, max_bytes: int, *, sse: bool = False) -> None: ...
    def push(self, chunk: bytes) -> bool:
        """Copy (and parse) one chunk; ``False`` once the cap has been passed."""

    def close(self) -> None:
        """Mark the end of the body (an unterminated trailing event is discarded)."""

    @property
    def overflowed(self) -> bool: ...
    @property
    def nbytes(self) -> int:
        """Bytes pushed so far, including those not copied after an overflow."""

    @property
    def end_state(self) -> str:
        """How the event stream ended: ``"open"`` (not closed yet), ``"done"`` (a
        ``data: [DONE]`` event), ``"finished"`` (every choice sent a finish_reason, no
        [DONE]), ``"error"`` (an error event), ``"truncated"`` (closed otherwise), or
        ``"not_sse"`` when ``sse`` is false."""

    @property
    def complete(self) -> bool:
        """Closed cleanly (``done`` or ``finished``) with nothing lost to the cap."""

    def getvalue(self) -> bytes:
        """The copied bytes (all of the body unless ``overflowed``)."""

    def events(self) -> list[SseEvent]:
        """Events dispatched so far."""

    def assemble_chat_completion(self) -> bytes:
        """The non-streaming ``chat.completion`` JSON equivalent to the copied stream.

        Raises :class:`~semanticcache.errors.StreamFormatError` when the stream is not
        complete or its chunks are not OpenAI ``chat.completion.chunk`` objects.
        """

def parse_sse(data: bytes) -> list[SseEvent]:
    """Parse a whole Server-Sent Events body (an unterminated last event is dropped)."""

def assemble_chat_completion(sse_body: bytes) -> bytes:
    """Assemble a complete OpenAI chat-completion SSE body into the equivalent
    non-streaming completion JSON (bytes). Raises ``StreamFormatError``."""

def render_chat_completion_sse(completion: bytes, *, include_usage: bool = False) -> bytes:
    """Render a stored ``chat.completion`` JSON as the SSE body an OpenAI server would
    stream for it, ending with ``data: [DONE]``. Raises ``StreamFormatError``."""
