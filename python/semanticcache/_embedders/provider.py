"""What the hosted-provider embedders (OpenAI, Ollama, Voyage, Cohere) share: the checks
of their arguments and one deadline over all the requests of an :meth:`embed` call.

The deadline covers the SDKs' retries and their ``Retry-After`` waits: an embedder in front
of a cache must answer or give up in time, so a slow provider costs a cache miss, not a
stalled request.
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Sequence
from typing import ClassVar

from semanticcache._embedders.base import BaseEmbedder, check_types
from semanticcache.errors import ConfigurationError, EmbedderError

__all__ = ["ProviderEmbedder", "unknown_model_error"]


class ProviderEmbedder(BaseEmbedder):
    """An embedder that sends texts to a provider's API, in requests of at most
    ``batch_size`` texts, all under one deadline of ``timeout_seconds``.

    ``model_id`` is ``<provider>:<model>``. Subclasses split a call's texts into requests
    (:meth:`_split`) and send one request (:meth:`_request`).
    """

    provider: ClassVar[str]
    """The provider's name, the prefix of ``model_id``."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        api_key_variable: str,
        timeout_seconds: float | None,
        max_retries: int,
        batch_size: int,
        max_batch_size: int,
    ) -> None:
        name = type(self).__name__
        if not api_key:
            raise ConfigurationError(f"{name} needs an API key ({api_key_variable})")
        if timeout_seconds is not None and not (
            math.isfinite(timeout_seconds) and timeout_seconds > 0
        ):
            raise ConfigurationError(f"timeout_seconds must be > 0, not {timeout_seconds}")
        if not 1 <= batch_size <= max_batch_size:
            raise ConfigurationError(f"batch_size must be in 1..{max_batch_size}, not {batch_size}")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, not {max_retries}")
        self.model = model
        self.model_id = f"{self.provider}:{model}"
        self.timeout_seconds = timeout_seconds
        self.batch_size = batch_size

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` in as few requests as the provider's limits allow."""
        if not texts:
            return []
        check_types(texts)
        vectors: list[list[float]] = []
        try:
            async with asyncio.timeout(self.timeout_seconds):
                for batch in await self._split(list(texts)):
                    vectors.extend(await self._request(batch))
        except TimeoutError as exc:
            raise EmbedderError(
                f"{self!r} did not answer within {self.timeout_seconds} s (retries included)"
            ) from exc
        return self.check_output(len(texts), vectors)

    @abc.abstractmethod
    async def _split(self, texts: list[str]) -> list[list[str]]:
        """``texts`` as the requests to send, in order."""

    @abc.abstractmethod
    async def _request(self, batch: list[str]) -> list[list[float]]:
        """The vectors of one request's texts; raises
        :class:`~semanticcache.errors.EmbedderError` when the provider fails."""


def unknown_model_error(provider: str, model: str, dimensions_variable: str) -> ConfigurationError:
    """The error for a model this package does not know, given no vector length."""
    return ConfigurationError(
        f"{provider} model {model!r} is not one this package knows: "
        f"set {dimensions_variable} to its vector length"
    )
