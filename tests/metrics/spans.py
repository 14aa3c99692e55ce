"""The process's OpenTelemetry tracer provider for the tests: the SDK's own, recording
into its in-memory exporter (a provider can be set once per process, so every test of
the session shares it; each test reads the spans of its own traces).

Spans are sampled only inside :func:`recording`: once a provider is set, FastAPI records
its own spans for every request, and the tests that do not read them should neither keep
them in memory nor pay for recording them. The sampler is the SDK's ``ParentBased``: a
span whose parent is not sampled (a ``traceparent`` with flags ``00``) is not either. It
counts the spans started, by name, sampled or not (:func:`started`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

_lock = threading.Lock()
_exporter: InMemorySpanExporter | None = None


class _OnOff(Sampler):
    """Every span while on, none while off."""

    def __init__(self) -> None:
        self.on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        # The span's attributes are the result's: passed on, as the SDK's samplers do.
        decision = Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP
        return SamplingResult(decision, attributes if self.on else None, trace_state)

    def get_description(self) -> str:
        return "tests.metrics.spans"


class _Switch(ParentBased):
    """The SDK's parent-based sampler: a child of a span not sampled is not sampled;
    the others (roots, children of sampled spans) all while on, none while off."""

    def __init__(self) -> None:
        self.switch = _OnOff()
        super().__init__(
            root=self.switch,
            remote_parent_sampled=self.switch,
            local_parent_sampled=self.switch,
        )
        # The SDK asks the sampler once per span it starts, recorded or not.
        self.asked: Counter[str] = Counter()

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.asked[name] += 1
        return super().should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )


_switch = _Switch()


def exporter() -> InMemorySpanExporter:
    """The exporter of the global SDK provider, installed on first use."""
    global _exporter
    with _lock:
        if _exporter is None:
            provider = TracerProvider(sampler=_switch)
            _exporter = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(_exporter))
            trace.set_tracer_provider(provider)
        return _exporter


@contextmanager
def recording(sampled: bool = True) -> Iterator[InMemorySpanExporter]:
    """Every span made in the block, in the exporter (emptied before and after); with
    ``sampled`` false none is (the sampler drops every span), but :func:`started` still
    counts them."""
    spans = exporter()
    spans.clear()
    _switch.asked.clear()
    _switch.switch.on = sampled
    try:
        yield spans
    finally:
        _switch.switch.on = False
        spans.clear()


def started(prefix: str = "semcache.") -> dict[str, int]:
    """How many spans of each name starting with ``prefix`` were started (sampled or
    not) since :func:`recording` began."""
    return {name: n for name, n in _switch.asked.items() if name.startswith(prefix)}


def of_trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]
