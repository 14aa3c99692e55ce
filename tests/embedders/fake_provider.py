"""A loopback server speaking the providers' embeddings wire formats.

``POST /v1/embeddings`` answers as OpenAI (and Ollama's compatible API) does, or as Voyage
does when the body carries Voyage's ``input_type``; ``POST /v2/embed`` answers as Cohere
does. The real SDKs talk to it over HTTP on 127.0.0.1. Answers are deterministic
vectors derived from each input (float32, as the API sends them), in the format the request
asks for (``float`` lists or ``base64`` of little-endian float32). Tests script failures by
queueing :class:`Reply` objects: a status with headers and an OpenAI error body, a delay,
or a raw body. Every request is recorded for the test to check.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeProvider", "Reply", "vector_for"]

NATIVE = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "nomic-embed-text": 768,
    "voyage-3.5": 1024,
    "voyage-3-lite": 512,
    "embed-v4.0": 1536,
    "embed-english-v3.0": 1024,
}


def vector_for(item: str | list[int], dimension: int) -> list[float]:
    """The server's deterministic vector for one input, rounded to float32."""
    seed = json.dumps(item).encode()
    values: list[float] = []
    counter = 0
    while len(values) < dimension:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    norm = sum(v * v for v in values[:dimension]) ** 0.5
    raw = struct.pack(f"<{dimension}f", *(v / norm for v in values[:dimension]))
    return list(struct.unpack(f"<{dimension}f", raw))


@dataclass
class Reply:
    """One scripted answer; the default fields give a normal, correct answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes | None = None
    """Sent as is (with ``application/json``) instead of the normal answer."""
    mangle: Any = None
    """A function given the normal answer's dict, returning the dict to send."""


_ERROR_TYPES = {429: "rate_limit_error", 500: "server_error", 401: "invalid_request_error"}


@dataclass
class FakeProvider:
    """The server; ``base_url`` is what OpenAI's and Voyage's SDKs take as ``base_url``,
    ``root_url`` what Cohere's takes."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v2/embed", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.replies.pop(0) if self.replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.body is not None:
            return web.Response(
                status=reply.status,
                body=reply.body,
                headers=reply.headers,
                content_type="application/json",
            )
        cohere = request.path == "/v2/embed"
        if reply.status != 200:
            return web.json_response(
                _error_body(body, reply.status, cohere=cohere),
                status=reply.status,
                headers=reply.headers,
            )
        answer = self._cohere_answer(body) if cohere else self._answer(body)
        if reply.mangle is not None:
            answer = reply.mangle(answer)
        return web.json_response(answer, headers=reply.headers)

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"]
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        dimension = (
            body.get("dimensions") or body.get("output_dimension") or NATIVE.get(body["model"], 8)
        )
        data = []
        for index, item in enumerate(inputs):
            vector = vector_for(item, dimension)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dimension}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(item) for item in inputs)
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _cohere_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["texts"]
        dimension = body.get("output_dimension") or NATIVE.get(body["model"], 8)
        tokens = sum(len(text) for text in texts)
        return {
            "id": "5807ee2e-0cda-445a-9ec8-864c60a06606",
            "embeddings": {"float": [vector_for(text, dimension) for text in texts]},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }


def _error_body(body: dict[str, Any], status: int, *, cohere: bool) -> dict[str, Any]:
    message = f"scripted {status}"
    if cohere:
        return {"message": message}
    if "input_type" in body:  # Voyage
        return {"detail": message}
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "api_error"),
            "param": None,
            "code": None,
        }
    }
