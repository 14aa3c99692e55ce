"""Fixtures shared by the provider-embedder tests: the loopback wire-format server and a
factory that builds embedders against it and closes them after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from semanticcache._embedders.base import BaseEmbedder
from tests.embedders.fake_provider import FakeProvider


@pytest.fixture
async def server() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    await fake.start()
    yield fake
    await fake.stop()


class EmbedderFactory:
    """``factory(cls, **defaults)`` returns a builder: ``build(**kwargs)`` makes a ``cls``
    with ``defaults`` under ``kwargs``; every embedder made is closed after the test."""

    def __init__(self) -> None:
        self.made: list[BaseEmbedder] = []

    def __call__[E: BaseEmbedder](self, cls: Callable[..., E], **defaults: Any) -> Callable[..., E]:
        def build(**kwargs: Any) -> E:
            embedder = cls(**(defaults | kwargs))
            self.made.append(embedder)
            return embedder

        return build


@pytest.fixture
async def embedder_factory() -> AsyncIterator[EmbedderFactory]:
    factory = EmbedderFactory()
    yield factory
    for embedder in factory.made:
        await embedder.aclose()
