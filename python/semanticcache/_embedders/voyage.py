"""Voyage AI embeddings through the official ``voyageai`` SDK (its ``AsyncClient``).

Limits, as Voyage documents them: at most 1000 texts per request, and a per-request token
total that depends on the model (120K for ``voyage-3-large``, 320K for ``voyage-3.5``, 1M
for ``voyage-3.5-lite``). Requests are split at ``batch_size`` texts and at 120,000 UTF-8
bytes (a token covers at least one byte, so that bound holds for every model without
Voyage's tokenizer). Inputs longer than the model's context (32K tokens) are **truncated**
by the API (``truncation=True``), so a long prompt still gets a vector of its beginning.

Lookups and stored entries are both questions, so both are embedded with
``input_type="query"``: the same side of Voyage's asymmetric models, hence comparable.
Every call runs under one deadline (``timeout_seconds``) that covers the SDK's retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from semanticcache._embedders.base import (
    BaseEmbedder,
    check_provider_args,
    pack_requests,
    sendable_text,
    shorten,
)
from semanticcache._embedders.factory import missing_extra_error
from semanticcache.errors import ConfigurationError, EmbedderError

try:
    import aiohttp
    import voyageai
    import voyageai.error
    from voyageai.client_async import AsyncClient
except ModuleNotFoundError as exc:
    raise missing_extra_error(exc.name, "embed-voyage", "VoyageEmbedder") from exc

__all__ = ["VOYAGE_MODELS", "VoyageEmbedder"]

MAX_TEXTS_PER_REQUEST: Final = 1000
# The strictest model's per-request token total, applied to UTF-8 bytes (>= tokens).
MAX_BYTES_PER_REQUEST: Final = 120_000
_FLEXIBLE: Final = frozenset({256, 512, 1024, 2048})

# Default vector length, and the other lengths the model offers on request.
VOYAGE_MODELS: Final[dict[str, tuple[int, frozenset[int]]]] = {
    "voyage-3.5": (1024, _FLEXIBLE),
    "voyage-3.5-lite": (1024, _FLEXIBLE),
    "voyage-3-large": (1024, _FLEXIBLE),
    "voyage-code-3": (1024, _FLEXIBLE),
    "voyage-4": (1024, _FLEXIBLE),
    "voyage-4-lite": (1024, _FLEXIBLE),
    "voyage-4-large": (1024, _FLEXIBLE),
    "voyage-3": (1024, frozenset()),
    "voyage-3-lite": (512, frozenset()),
}


class VoyageEmbedder(BaseEmbedder):
    """Embeddings from the Voyage AI API.

    ``model_id`` is ``voyage:<model>``; ``dimension`` is ``dimensions`` when given (models
    with flexible dimensions offer 256, 512, 1024 or 2048), else the model's default. A
    model this package does not know needs ``dimensions``. ``max_retries`` is the SDK's
    (it retries 429 and 502-504 with exponential back-off); ``timeout_seconds`` bounds a
    whole :meth:`embed` call, retries included.
    """

    def __init__(
        self,
        *,
        model: str = "voyage-3.5",
        dimensions: int | None = None,
        api_key: str,
        base_url: str | None = None,
        timeout_seconds: float | None = 30.0,
        max_retries: int = 2,
        batch_size: int = 128,
    ) -> None:
        check_provider_args(
            "VoyageEmbedder",
            api_key=api_key,
            api_key_variable="SEMANTIC_CACHE_VOYAGE_API_KEY",
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            batch_size=batch_size,
            max_batch_size=MAX_TEXTS_PER_REQUEST,
        )
        self.model = model
        self.dimension, self._output_dimension = _resolve_dimension(model, dimensions)
        self.model_id = f"voyage:{model}"
        self.timeout_seconds = timeout_seconds
        self.batch_size = batch_size
        # The SDK counts attempts, not retries: N retries are N + 1 attempts.
        self._client = AsyncClient(
            api_key=api_key, max_retries=max_retries + 1, timeout=timeout_seconds, base_url=base_url
        )
        self._session: aiohttp.ClientSession | None = None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` in as few requests as Voyage's limits allow."""
        if not texts:
            return []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {index} is {type(text).__name__}, not str")
        sized = [(text, len(text.encode("utf-8", "replace"))) for text in texts]
        requests = pack_requests(sized, max_items=self.batch_size, max_tokens=MAX_BYTES_PER_REQUEST)
        vectors: list[list[float]] = []
        try:
            async with asyncio.timeout(self.timeout_seconds):
                for batch in requests:
                    vectors.extend(await self._request(batch))
        except TimeoutError as exc:
            raise EmbedderError(
                f"{self!r} did not answer within {self.timeout_seconds} s (retries included)"
            ) from exc
        return self.check_output(len(texts), vectors)

    async def _request(self, batch: list[str]) -> list[list[float]]:
        # The SDK opens (and closes) an HTTP session per request unless one is set in its
        # context variable: keep one, so that requests reuse their connections.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        token = voyageai.aiosession.set(self._session)
        try:
            result = await self._client.embed(
                [sendable_text(text) for text in batch],
                model=self.model,
                input_type="query",
                truncation=True,
                output_dimension=self._output_dimension,
            )
            embeddings: object = result.embeddings
            if not isinstance(embeddings, list):
                raise EmbedderError(f"{self!r} returned a malformed answer: no embeddings")
            return embeddings
        except EmbedderError:
            raise
        except voyageai.error.Timeout as exc:
            raise EmbedderError(f"{self!r} timed out") from exc
        except voyageai.error.APIConnectionError as exc:
            raise EmbedderError(f"{self!r} could not connect: {shorten(exc)}") from exc
        except voyageai.error.VoyageError as exc:
            status = f"HTTP {exc.http_status} " if exc.http_status else ""
            raise EmbedderError(f"{self!r} failed: {status}{shorten(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise EmbedderError(f"{self!r} could not connect: {shorten(exc)}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Malformed bodies surface as JSON, base64 or attribute errors in the SDK.
            raise EmbedderError(f"{self!r} returned a malformed answer: {shorten(exc)}") from exc
        finally:
            voyageai.aiosession.reset(token)

    async def aclose(self) -> None:
        """Close the HTTP session the requests share."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _resolve_dimension(model: str, dimensions: int | None) -> tuple[int, int | None]:
    """(vector length, the request's ``output_dimension`` or None to omit it)."""
    known = VOYAGE_MODELS.get(model)
    if known is None:
        if dimensions is None:
            raise ConfigurationError(
                f"voyage model {model!r} is not one this package knows: "
                "set SEMANTIC_CACHE_VOYAGE_DIMENSIONS to its vector length"
            )
        return dimensions, None
    default, offered = known
    if dimensions is None or dimensions == default:
        return default, None
    if dimensions not in offered:
        choices = ", ".join(str(d) for d in sorted(offered)) or f"only {default}"
        raise ConfigurationError(
            f"SEMANTIC_CACHE_VOYAGE_DIMENSIONS={dimensions} is not offered by {model!r} ({choices})"
        )
    return dimensions, dimensions
