"""OpenTelemetry spans (the ``otel`` extra): what the cache, the middleware and the proxy
record when ``SEMANTIC_CACHE_TRACING`` is on.

``opentelemetry`` is imported only when tracing is turned on: with it off, the request
path holds ``None`` where a :class:`Tracing` would be and pays one ``is not None`` per
hook, and no span object is made. Spans go to the tracer provider the application
configures (``opentelemetry.trace.set_tracer_provider``, or the SDK's auto-configuration);
until it does, OpenTelemetry's own no-op provider drops them. A request whose span the
sampler does not record starts no other span: each hook checks :attr:`Tracing.untraced`
once, so tracing's cost follows the sampling rate.

Attributes hold what the cache's log lines hold: keyed digests of the lookup text and
the scope, outcomes, reasons, similarities and route templates; never a prompt, a header
value or an exception's message (messages may quote a body). docs/observability.md lists
the spans.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Final

from starlette.types import Scope

from semanticcache._embedders.factory import extra_imports

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from semanticcache._settings import CacheSettings

__all__ = [
    "EMBED",
    "REPLAY",
    "REQUEST",
    "SEARCH",
    "STORE",
    "UPSTREAM",
    "Tracing",
    "tracing_for",
]

REQUEST: Final = "semcache.request"
EMBED: Final = "semcache.embed"
SEARCH: Final = "semcache.search"
STORE: Final = "semcache.store"
UPSTREAM: Final = "semcache.upstream"
REPLAY: Final = "semcache.replay"

_TRACER_NAME: Final = "semanticcache"

# True inside a request whose span is not recorded (its trace not sampled): the hooks
# then start no span. A context variable: the request's store task inherits it.
_untraced: Final[ContextVar[bool]] = ContextVar("semcache_untraced", default=False)

# What the SDK's ParentBased sampler says of itself when a parent not sampled (remote or
# local) makes its children not sampled either: its defaults.
_PARENT_BASED: Final = "ParentBased{"
_DROPS_UNSAMPLED: Final = (
    "remoteParentNotSampled:AlwaysOffSampler",
    "localParentNotSampled:AlwaysOffSampler",
)


class Tracing:
    """Starts the cache's spans on the global tracer provider (see docs/observability.md)."""

    def __init__(self) -> None:
        with extra_imports("otel", "OpenTelemetry tracing (SEMANTIC_CACHE_TRACING)"):
            from opentelemetry import context, propagate, trace
            from opentelemetry.trace import SpanKind, Status, StatusCode
        from semanticcache import _native

        self._attach = context.attach
        self._detach = context.detach
        self._propagate = propagate
        self._current_span = trace.get_current_span
        self._in_context = trace.set_span_in_context
        self._provider = trace.get_tracer_provider
        self._invalid = trace.INVALID_SPAN
        self._sampler_of: object = None
        self._follows_parent = False
        self._server = SpanKind.SERVER
        self._internal = SpanKind.INTERNAL
        self._error = StatusCode.ERROR
        self._status = Status
        # A proxy tracer until the application sets its provider, which it then follows.
        self._tracer = trace.get_tracer(_TRACER_NAME, _native.__version__)
        self._textmap: object = None
        self._fields: frozenset[bytes] = frozenset()
        # Whether the current request's trace goes unrecorded: then a hook starts no
        # span (its child would not be recorded either) and sets no attribute.
        self.untraced: Callable[[], bool] = _untraced.get

    def request(
        self, scope: Scope, attributes: Mapping[str, AttributeValue]
    ) -> AbstractContextManager[Span]:
        """The span of one request through the middleware, current while the block runs.
        When the sampler does not record it, :attr:`untraced` answers true in the block:
        the cache's hooks start no span in it; it still carries the trace context (its
        ``traceparent`` is the one the proxy forwards).

        Its parent is the current span when there is one (an outer instrumentation that
        already read the caller's context), else the context the request's headers carry
        (W3C ``traceparent`` with the default propagators), so the cache's spans join the
        caller's trace either way. A parent not sampled under a parent-based sampler
        (the SDK's default) decides without the sampler: no span is started, and the
        parent's context is the one current in the block.
        """
        parent = None
        context = self._current_span().get_span_context()
        if context.is_valid:
            kind = self._internal
            if not context.trace_flags.sampled and self._unsampled_children():
                return _Unsampled(self, None)
        else:
            kind = self._server
            carrier = self._carrier(scope)
            if carrier:
                parent = self._propagate.extract(carrier)
                context = self._current_span(parent).get_span_context()
                if (
                    context.is_valid
                    and not context.trace_flags.sampled
                    and self._unsampled_children()
                ):
                    return _Unsampled(self, parent)
        span = self._tracer.start_span(
            REQUEST,
            context=parent,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        return _Request(self, span)

    def _unsampled_children(self) -> bool:
        """Whether the provider's sampler makes a child of a span not sampled not
        sampled either (the SDK's ``ParentBased`` with its defaults for those), read
        once per provider (the application may set its provider after the cache
        was made)."""
        provider = self._provider()
        if provider is not self._sampler_of:
            sampler = getattr(provider, "sampler", None)
            describe = getattr(sampler, "get_description", None)
            description = describe() if callable(describe) else ""
            self._follows_parent = isinstance(description, str) and (
                description.startswith(_PARENT_BASED)
                and all(part in description for part in _DROPS_UNSAMPLED)
            )
            self._sampler_of = provider
        return self._follows_parent

    def span(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> _Current:
        """A child span of the current one, itself current while the block runs (the
        spans started inside it, the app's or an embedder's, are its children)."""
        return _Current(self, self._start(name, attributes))

    def leaf(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> _Leaf:
        """A child span of the current one, for a block that starts no span of its own
        (it is never made current: that costs a context switch each way)."""
        return _Leaf(self, self._start(name, attributes))

    def _start(self, name: str, attributes: Mapping[str, AttributeValue] | None) -> Span:
        return self._tracer.start_span(
            name, attributes=attributes, record_exception=False, set_status_on_exception=False
        )

    def failed(self, kind: str) -> None:
        """Mark the current span failed: ``kind`` is a reason or a type, never a message."""
        self.fail(self._current_span(), kind)

    def fail(self, span: Span, kind: str) -> None:
        span.set_attribute("error.type", kind)
        span.set_status(self._status(self._error, kind))

    def _failure(self, span: Span, exc: BaseException) -> None:
        # The kind of failure only: an exception's message may quote a prompt.
        kind = getattr(exc, "reason", None)
        self.fail(span, kind if isinstance(kind, str) else type(exc).__qualname__)

    def _carrier(self, scope: Scope) -> dict[str, str]:
        """The request's propagation fields (``traceparent``, ``tracestate``, ``baggage``
        with the default propagators) by lower-case name; no other header is read."""
        textmap = self._propagate.get_global_textmap()
        if textmap is not self._textmap:
            # The application may set its propagators after the cache was made.
            self._fields = frozenset(name.encode("latin-1") for name in textmap.fields)
            self._textmap = textmap
        fields = self._fields
        carrier: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            if name in fields:
                text = value.decode("latin-1")
                key = name.decode("latin-1")
                # Repeated fields are one comma-separated list (RFC 9110 5.3).
                carrier[key] = f"{carrier[key]},{text}" if key in carrier else text
        return carrier

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Write the current trace context into outgoing request ``headers`` (replacing
        the fields of the same names); nothing when there is no current span."""
        self._propagate.inject(headers)


class _Leaf:
    """A started span, ended (and marked failed on an exception) when the block ends."""

    __slots__ = ("span", "tracing")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self.tracing = tracing
        self.span = span

    def __enter__(self) -> Span:
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.tracing._failure(self.span, exc)
        self.span.end()


class _Current(_Leaf):
    """A started span, current while the block runs."""

    __slots__ = ("token",)

    def __enter__(self) -> Span:
        tracing = self.tracing
        self.token = tracing._attach(tracing._in_context(self.span))
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.tracing._detach(self.token)
        super().__exit__(exc_type, exc, tb)


class _Request(_Current):
    """The request span, current while the block runs; when it is not recorded, the
    block is untraced."""

    __slots__ = ("untraced",)
    untraced: Token[bool] | None

    def __enter__(self) -> Span:
        span = super().__enter__()
        self.untraced = None if span.is_recording() else _untraced.set(True)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.untraced is not None:
            _untraced.reset(self.untraced)
        super().__exit__(exc_type, exc, tb)


class _Unsampled:
    """A request whose parent is not sampled, nor then its span: none is started. The
    block is untraced, and the parent's context (``attached``, when it is not current
    already) is current in it. Its span is the invalid one: nothing records on it (the
    parent may record without being sampled: it is not the cache's)."""

    __slots__ = ("attached", "token", "tracing", "untraced")

    def __init__(self, tracing: Tracing, attached: Context | None) -> None:
        self.tracing = tracing
        self.attached = attached
        self.token: Token[Context] | None = None
        self.untraced: Token[bool] | None = None

    def __enter__(self) -> Span:
        if self.attached is not None:
            self.token = self.tracing._attach(self.attached)
        self.untraced = _untraced.set(True)
        return self.tracing._invalid

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.untraced is not None:
            _untraced.reset(self.untraced)
        if self.token is not None:
            self.tracing._detach(self.token)


_lock = threading.Lock()
_tracing: Tracing | None = None


def process_tracing() -> Tracing:
    """This process's tracing, created (and ``opentelemetry`` imported) on first use."""
    global _tracing
    with _lock:
        if _tracing is None:
            _tracing = Tracing()
        return _tracing


def tracing_for(settings: CacheSettings) -> Tracing | None:
    """The process's tracing when ``settings`` turn it on, else ``None``."""
    return process_tracing() if settings.tracing else None
