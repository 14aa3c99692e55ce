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

from typing import Final

from semanticcache._embedders.base import pack_requests, sendable_text, shorten
from semanticcache._embedders.factory import extra_imports
from semanticcache._embedders.provider import ProviderEmbedder, unknown_model_error
from semanticcache.errors import ConfigurationError, EmbedderError

with extra_imports("embed-voyage", "VoyageEmbedder"):
    import aiohttp
    import voyageai
    import voyageai.error
    from voyageai.client_async import AsyncClient

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


class VoyageEmbedder(ProviderEmbedder):
    """Embeddings from the Voyage AI API.

    ``model_id`` is ``voyage:<model>``; ``dimension`` is ``dimensions`` when given (models
    with flexible dimensions offer 256, 512, 1024 or 2048), else the model's default. A
    model this package does not know needs ``dimensions``. ``max_retries`` is the SDK's
    (it retries 429 and 502-504 with exponential back-off); ``timeout_seconds`` bounds a
    whole :meth:`embed` call, retries included.
    """

    provider = "voyage"

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
        super().__init__(
            model=model,
            api_key=api_key,
            api_key_variable="SEMANTIC_CACHE_VOYAGE_API_KEY",
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            batch_size=batch_size,
            max_batch_size=MAX_TEXTS_PER_REQUEST,
        )
        self.dimension, self._output_dimension = _resolve_dimension(model, dimensions)
        # The SDK counts attempts, not retries: N retries are N + 1 attempts.
        self._client = AsyncClient(
            api_key=api_key, max_retries=max_retries + 1, timeout=timeout_seconds, base_url=base_url
        )
        self._session: aiohttp.ClientSession | None = None

    async def _split(self, texts: list[str]) -> list[list[str]]:
        sized = [(text, len(text.encode("utf-8", "replace"))) for text in texts]
        return pack_requests(sized, max_items=self.batch_size, max_tokens=MAX_BYTES_PER_REQUEST)

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
            raise unknown_model_error("voyage", model, "SEMANTIC_CACHE_VOYAGE_DIMENSIONS")
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
