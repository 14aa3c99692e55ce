"""Cohere embeddings through the official ``cohere`` SDK (``AsyncClientV2``, ``/v2/embed``).

Limits, as Cohere documents them: at most 96 texts per request; inputs longer than the
model's context (512 tokens for the v3 models, 128K for ``embed-v4.0``) are **truncated**
at the end (``truncate="END"``, sent explicitly), so a long prompt still gets a vector of
its beginning. Requests are split at ``batch_size`` texts.

Lookups and stored entries are both questions, so both are embedded with
``input_type="search_query"``: the same side of Cohere's asymmetric models, hence
comparable. Every call runs under one deadline (``timeout_seconds``) that covers the SDK's
retries, which honour ``Retry-After``.
"""

from __future__ import annotations

from typing import Any, Final

from semanticcache._embedders.base import batches, sendable_text, shorten
from semanticcache._embedders.factory import extra_imports
from semanticcache._embedders.provider import ProviderEmbedder, unknown_model_error
from semanticcache.errors import ConfigurationError, EmbedderError

with extra_imports("embed-cohere", "CohereEmbedder"):
    import cohere
    import cohere.core.api_error
    import httpx

__all__ = ["COHERE_MODELS", "CohereEmbedder"]

MAX_TEXTS_PER_REQUEST: Final = 96

# Default vector length, and the other lengths the model offers on request.
COHERE_MODELS: Final[dict[str, tuple[int, frozenset[int]]]] = {
    "embed-v4.0": (1536, frozenset({256, 512, 1024})),
    "embed-english-v3.0": (1024, frozenset()),
    "embed-multilingual-v3.0": (1024, frozenset()),
    "embed-english-light-v3.0": (384, frozenset()),
    "embed-multilingual-light-v3.0": (384, frozenset()),
}


class CohereEmbedder(ProviderEmbedder):
    """Embeddings from the Cohere API.

    ``model_id`` is ``cohere:<model>``; ``dimension`` is ``dimensions`` when given
    (``embed-v4.0`` offers 256, 512, 1024 or 1536), else the model's default. A model this
    package does not know needs ``dimensions``. ``timeout_seconds`` bounds a whole
    :meth:`embed` call, retries included.
    """

    provider = "cohere"

    def __init__(
        self,
        *,
        model: str = "embed-v4.0",
        dimensions: int | None = None,
        api_key: str,
        base_url: str | None = None,
        timeout_seconds: float | None = 30.0,
        max_retries: int = 2,
        batch_size: int = MAX_TEXTS_PER_REQUEST,
    ) -> None:
        super().__init__(
            model=model,
            api_key=api_key,
            api_key_variable="SEMANTIC_CACHE_COHERE_API_KEY",
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            batch_size=batch_size,
            max_batch_size=MAX_TEXTS_PER_REQUEST,
        )
        self.dimension, self._output_dimension = _resolve_dimension(model, dimensions)
        # Our own HTTP client, so that aclose() can close it.
        self._http = httpx.AsyncClient(timeout=timeout_seconds)
        self._client = cohere.AsyncClientV2(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,
            httpx_client=self._http,
        )

    async def _split(self, texts: list[str]) -> list[list[str]]:
        return list(batches(texts, self.batch_size))

    async def _request(self, batch: list[str]) -> list[list[float]]:
        # The model's default length is asked for by leaving the field out.
        shorter: dict[str, Any] = {}
        if self._output_dimension is not None:
            shorter["output_dimension"] = self._output_dimension
        try:
            response = await self._client.embed(
                model=self.model,
                input_type="search_query",
                texts=[sendable_text(text) for text in batch],
                embedding_types=["float"],
                truncate="END",
                **shorter,
            )
            floats: object = response.embeddings.float_
            if not isinstance(floats, list):
                raise EmbedderError(f"{self!r} returned a malformed answer: no float embeddings")
            return floats
        except EmbedderError:
            raise
        except cohere.core.api_error.ApiError as exc:
            raise EmbedderError(
                f"{self!r} failed: HTTP {exc.status_code} {shorten(str(exc.body))}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise EmbedderError(f"{self!r} timed out") from exc
        except httpx.TransportError as exc:
            raise EmbedderError(f"{self!r} could not connect: {shorten(str(exc))}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Malformed bodies surface as JSON or validation errors in the SDK.
            raise EmbedderError(
                f"{self!r} returned a malformed answer: {shorten(str(exc))}"
            ) from exc

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


def _resolve_dimension(model: str, dimensions: int | None) -> tuple[int, int | None]:
    """(vector length, the request's ``output_dimension`` or None to omit it)."""
    known = COHERE_MODELS.get(model)
    if known is None:
        if dimensions is None:
            raise unknown_model_error("cohere", model, "SEMANTIC_CACHE_COHERE_DIMENSIONS")
        return dimensions, None
    default, offered = known
    if dimensions is None or dimensions == default:
        return default, None
    if dimensions not in offered:
        choices = ", ".join(str(d) for d in sorted({*offered, default}))
        raise ConfigurationError(
            f"SEMANTIC_CACHE_COHERE_DIMENSIONS={dimensions} is not offered by {model!r} ({choices})"
        )
    return dimensions, dimensions
