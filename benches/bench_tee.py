"""Streaming tee per-chunk cost, and chat-completion assemble / render of a 500-chunk
stream: native vs the plain-Python references (``tests/native/ref_stream.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from tests.native import ref_stream as ref

from semanticcache import _native

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "and",
    "keeps",
    "on",
    "running",
]


def chat_chunks(n: int) -> list[bytes]:
    """``n`` OpenAI-shaped SSE chunks of roughly 100-400 bytes each, ending in [DONE]."""
    head = {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
    }
    out = []
    for i in range(n - 2):
        text = " ".join(WORDS[: 1 + (i * 7) % len(WORDS)]) * (1 + i % 4)
        delta: dict[str, Any] = {"content": text} if i else {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        out.append(b"data: " + json.dumps(dict(head, choices=[choice])).encode() + b"\n\n")
    final = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    out.append(b"data: " + json.dumps(dict(head, choices=[final])).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


CHUNKS = chat_chunks(500)
BODY = b"".join(CHUNKS)


def test_chunk_sizes_are_typical() -> None:
    sizes = sorted(len(c) for c in CHUNKS[:-1])
    assert 100 <= sizes[len(sizes) // 2] <= 400


def run_native(sse: bool) -> bool:
    tee = _native.StreamTee(1 << 24, sse=sse)
    for c in CHUNKS:
        tee.push(c)
    tee.close()
    return tee.complete


def run_ref(sse: bool) -> bool:
    tee = ref.Tee(1 << 24, sse=sse)
    for c in CHUNKS:
        tee.push(c)
    tee.close()
    return tee.complete


@pytest.mark.parametrize("sse", [False, True], ids=["plain", "sse"])
@pytest.mark.parametrize("impl", ["native", "python"])
def test_tee_500_chunks(benchmark: BenchmarkFixture, impl: str, sse: bool) -> None:
    """One round = 500 pushes + close: divide by 500 for the per-chunk cost."""
    benchmark.group = f"tee-500-chunks-{'sse' if sse else 'plain'}"
    complete = benchmark(run_native if impl == "native" else run_ref, sse)
    assert complete == sse


@pytest.mark.parametrize("impl", ["native", "python"])
def test_assemble_500_chunks(benchmark: BenchmarkFixture, impl: str) -> None:
    benchmark.group = "assemble-500-chunks"
    if impl == "native":
        got = json.loads(benchmark(_native.assemble_chat_completion, BODY))
    else:
        got = benchmark(ref.assemble_chat_completion, BODY)
    assert got["choices"][0]["finish_reason"] == "stop"
    assert got == ref.assemble_chat_completion(BODY)


COMPLETION = _native.assemble_chat_completion(BODY)


@pytest.mark.parametrize("impl", ["native", "python"])
def test_render_500_chunk_completion(benchmark: BenchmarkFixture, impl: str) -> None:
    benchmark.group = "render"
    if impl == "native":
        out = benchmark(_native.render_chat_completion_sse, COMPLETION, include_usage=True)
    else:
        parsed = json.loads(COMPLETION)
        out = benchmark(ref.render_chat_completion_sse, parsed, include_usage=True)
    assert json.loads(_native.assemble_chat_completion(out)) == json.loads(COMPLETION)
