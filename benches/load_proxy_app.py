"""The apps ``benches/load_proxy.py`` serves under uvicorn.

``upstream``: a minimal raw ASGI app (a fixed chat completion with a Content-Length, for
any method and path), the stand-in for the service behind the proxy. ``app``: the proxy
in front of ``LOAD_UPSTREAM`` with a cache on ``LOAD_PG_URI`` (hashing embedder:
deterministic, no model). Only the module uvicorn is told to serve is instantiated.
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.types import Receive, Scope, Send

ANSWER = json.dumps(
    {
        "id": "chatcmpl-load",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "load",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris is the capital of France."},
                "finish_reason": "stop",
            }
        ],
    }
).encode()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def upstream(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def _make_proxy() -> Any:
    from semanticcache import HashingEmbedder, SemanticCache, create_semantic_cache_proxy_app

    cache = SemanticCache(
        pg_uri=os.environ["LOAD_PG_URI"], embedder=HashingEmbedder(), threshold=0.9
    )
    # The seeded entries are keyed by path and query (the seeding knows no host name).
    return create_semantic_cache_proxy_app(
        os.environ["LOAD_UPSTREAM"], cache, route_key="path_query"
    )


def __getattr__(name: str) -> Any:
    # ``app`` is made on first access: the upstream process never builds a proxy.
    if name == "app":
        globals()["app"] = made = _make_proxy()
        return made
    raise AttributeError(name)
