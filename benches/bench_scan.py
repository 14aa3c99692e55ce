"""``scan_request`` against what Python code would do for the same cache key.

One group per body size (1 KB, 100 KB, 1 MB realistic chat bodies: a system prompt, many
turns of markdown-ish text, generation parameters, tools, a short last user turn). In
each group:

* ``native``: ``_native.scan_request(body)``.
* ``json``: ``json.loads`` + the Python walk.
* ``orjson``: ``orjson.loads`` + the same walk.
* ``orjson_fast``: ``orjson.loads`` + a walk that hashes ``orjson.dumps(OPT_SORT_KEYS)``
  instead of ``json.dumps``: the strongest pure-Python baseline.

The walk is what the cache needs and nothing more: model, stream, the last user turn's
text, and digests of the parameters and of the rest of the conversation (BLAKE2b of
sorted-key JSON; cheaper than the native canonical form, which also normalizes numbers
and escapes). Run with ``pytest benches/bench_scan.py --benchmark-enable``; without it
each function runs once as a correctness test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from semanticcache import _native

TEXT_TYPES = frozenset({"text", "input_text", "output_text"})

_PARAGRAPH = (
    "Here is how the **index** works:\n\n"
    "1. Vectors are inserted into a layered graph (HNSW); each layer is sparser.\n"
    '2. A query walks from the top layer down, keeping the "ef_search" best candidates.\n'
    "3. Results are re-ranked by cosine distance \u2014 exact, not approximate.\n\n"
    "```sql\nSELECT id FROM items ORDER BY embedding <=> $1 LIMIT 5;\n```\n"
    "Caf\u00e9 notes: r\u00e9sum\u00e9 \u2192 \u4e2d\u6587 \U0001f600\n"
)


def chat_body(target_bytes: int) -> bytes:
    """A chat-completions body of about ``target_bytes``, ending with a short user turn."""
    messages: list[dict[str, Any]] = []
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "stream": True,
        "temperature": 0.2,
        "top_p": 1,
        "max_tokens": 1024,
        "seed": 42,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "search",
                    "description": "Search the docs.",
                    "parameters": {
                        "type": "object",
                        "properties": {"q": {"type": "string"}, "k": {"type": "integer"}},
                        "required": ["q"],
                    },
                },
            }
        ],
        "messages": messages,
    }
    messages.append({"role": "system", "content": "You are a helpful assistant. " * 8})
    turn = 0
    while len(json.dumps(body)) < target_bytes - 200:
        if turn % 2 == 0:
            messages.append({"role": "user", "content": f"Question {turn}: how does it scale?"})
        else:
            reps = max(1, min(8, (target_bytes - len(json.dumps(body))) // 700))
            messages.append({"role": "assistant", "content": _PARAGRAPH * reps})
        turn += 1
    if messages[-1]["role"] == "user":
        messages.pop()
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And what about IVFFlat?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        }
    )
    return json.dumps(body).encode()


SIZES = {"1KB": chat_body(1_000), "100KB": chat_body(100_000), "1MB": chat_body(1_000_000)}


def _text_of(content: Any) -> tuple[str | None, Any]:
    if isinstance(content, str):
        return content, None
    if isinstance(content, list):
        parts: list[str] = []
        rest: list[Any] = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
                rest.append(None)
            elif (
                isinstance(p, dict)
                and p.get("type") in TEXT_TYPES
                and isinstance(p.get("text"), str)
            ):
                parts.append(p["text"])
                rest.append({k: v for k, v in p.items() if k != "text"})
            else:
                rest.append(p)
        return ("\n".join(parts) if parts else None), rest
    return None, content


def _walk(doc: dict[str, Any], dumps: Callable[[Any], bytes]) -> tuple[Any, ...]:
    model = doc.get("model")
    stream = doc.get("stream")
    messages = doc["messages"]
    last = messages[-1]
    query, rest = _text_of(last.get("content"))
    context = ["messages", doc.get("system"), [*messages[:-1], {**last, "content": rest}]]
    params = {k: v for k, v in doc.items() if k not in ("model", "stream", "system", "messages")}
    return (
        model if isinstance(model, str) else None,
        stream if isinstance(stream, bool) else None,
        query,
        hashlib.blake2b(dumps(params), digest_size=32).digest(),
        hashlib.blake2b(dumps(context), digest_size=32).digest(),
    )


def _json_dumps(v: Any) -> bytes:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _orjson_dumps(v: Any) -> bytes:
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS)


def run_native(body: bytes) -> tuple[Any, ...]:
    r = _native.scan_request(body)
    return (r.model, r.stream, r.query, r.params_digest, r.context_digest)


def run_json(body: bytes) -> tuple[Any, ...]:
    return _walk(json.loads(body), _json_dumps)


def run_orjson(body: bytes) -> tuple[Any, ...]:
    return _walk(orjson.loads(body), _json_dumps)


def run_orjson_fast(body: bytes) -> tuple[Any, ...]:
    return _walk(orjson.loads(body), _orjson_dumps)


IMPLS: dict[str, Callable[[bytes], tuple[Any, ...]]] = {
    "native": run_native,
    "json": run_json,
    "orjson": run_orjson,
    "orjson_fast": run_orjson_fast,
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("size", list(SIZES))
def test_bench_scan(benchmark: BenchmarkFixture, size: str, impl: str) -> None:
    body = SIZES[size]
    benchmark.group = f"scan-{size}"
    model, stream, query, params_digest, context_digest = benchmark(IMPLS[impl], body)
    # Every variant finds the same things (digests differ by construction).
    assert (model, stream, query) == ("gpt-4o-mini", True, "And what about IVFFlat?")
    assert len(params_digest) == len(context_digest) == 32
