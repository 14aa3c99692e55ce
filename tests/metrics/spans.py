"""The process's OpenTelemetry tracer provider for the tests: the SDK's own, recording
into its in-memory exporter (a provider can be set once per process, so every test of
the session shares it; each test reads the spans of its own traces)."""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_lock = threading.Lock()
_exporter: InMemorySpanExporter | None = None


def exporter() -> InMemorySpanExporter:
    """The exporter of the global SDK provider, installed on first use."""
    global _exporter
    with _lock:
        if _exporter is None:
            provider = TracerProvider()
            _exporter = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(_exporter))
            trace.set_tracer_provider(provider)
        return _exporter


def of_trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]
