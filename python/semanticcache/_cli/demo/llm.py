"""The stand-in LLM: an OpenAI-compatible chat-completions app that answers from the question.

It answers after a seeded delay, so that the demo shows what a hit saves without a model
or a network.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from semanticcache._cli.demo.questions import Group

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["ID_PREFIX", "MODEL", "PATH", "StandInLLM", "stand_in_latency_ms"]

MODEL: Final = "demo-llm"
PATH: Final = "/v1/chat/completions"
ID_PREFIX: Final = "chatcmpl-demo-"
"""The completion ids' prefix; the rest names the question group that was answered."""


def stand_in_latency_ms(text: str, seed: int, bounds: tuple[int, int]) -> float:
    """The stand-in's delay for ``text``: uniform in ``bounds``, the same for the same
    text and seed."""
    digest = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return random.Random(digest).uniform(*bounds)  # noqa: S311 - simulated latency


class StandInLLM:
    """An OpenAI-compatible ``POST /v1/chat/completions`` that answers from the question.

    The answer is the one of the question's group (a fixed text for unknown questions),
    after :func:`stand_in_latency_ms`; the completion's ``id`` names the group, so the
    demo can tell which question a cached answer was for. Counts its calls.
    """

    def __init__(self, groups: Sequence[Group], *, seed: int, latency_ms: tuple[int, int]):
        from starlette.applications import Starlette
        from starlette.routing import Route

        self._by_text = {q: g for g in groups for q in g.questions}
        self._seed = seed
        self._latency = latency_ms
        self.calls = 0
        """Requests answered (what the cache did not save)."""
        self.app = Starlette(routes=[Route(PATH, self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        body = await request.json()
        messages = body.get("messages") if isinstance(body, dict) else None
        users = [
            m.get("content")
            for m in messages or []
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        question = users[-1] if users and isinstance(users[-1], str) else ""
        group = self._by_text.get(question)
        group_id = group.id if group is not None else "unknown"
        answer = group.answer if group is not None else "The stand-in LLM does not know that."
        await asyncio.sleep(stand_in_latency_ms(question, self._seed, self._latency) / 1000)
        self.calls += 1
        return JSONResponse(
            {
                "id": f"{ID_PREFIX}{group_id}",
                "object": "chat.completion",
                "created": 1_767_225_600,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(question.split()),
                    "completion_tokens": len(answer.split()),
                    "total_tokens": len(question.split()) + len(answer.split()),
                },
            }
        )
