"""OpenAI embeddings through the official ``openai`` SDK, and Ollama through its
OpenAI-compatible API (``/v1/embeddings``).

Limits, as the OpenAI API documents them: at most 8191 tokens per input, 2048 inputs and
300,000 tokens per request. Inputs over 8191 tokens are **truncated** to their first 8191
tokens (counted with ``tiktoken``'s encoding for the model), so a long prompt still gets a
vector of its beginning rather than an error; requests are split to stay within the other
two limits. When the encoding cannot be loaded (tiktoken downloads it once, and a machine
may not reach its host), inputs are cut at 8191 UTF-8 bytes instead: every token covers at
least one byte, so that bound is always safe, only shorter. Tokenizing runs on a worker
thread, and only for inputs long enough to need it.

Ollama truncates inputs to the model's context itself, so :class:`OllamaEmbedder` sends
texts as they are (capped at ``max_input_chars`` characters) and needs no key.

Every call runs under one deadline (``timeout_seconds``) that covers the SDK's retries and
their ``Retry-After`` waits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from semanticcache._embedders.base import pack_requests, sendable_text, shorten
from semanticcache._embedders.factory import extra_imports
from semanticcache._embedders.provider import ProviderEmbedder, unknown_model_error
from semanticcache.errors import ConfigurationError, EmbedderError

with extra_imports("embed-openai", "OpenAIEmbedder"):
    import openai
    from openai import AsyncOpenAI

if TYPE_CHECKING:
    # Imported when first needed: Ollama never tokenizes, and embed-ollama has no tiktoken.
    import tiktoken

__all__ = ["OLLAMA_DEFAULT_BASE_URL", "OllamaEmbedder", "OpenAIEmbedder"]

log = logging.getLogger("semanticcache.embedders.openai")

MAX_INPUT_TOKENS: Final = 8191
MAX_INPUTS_PER_REQUEST: Final = 2048
MAX_TOKENS_PER_REQUEST: Final = 300_000
OLLAMA_DEFAULT_BASE_URL: Final = "http://127.0.0.1:11434/v1"
# UTF-8 takes at most 4 bytes a character and a token at least 1 byte: a text of at most
# this many characters cannot exceed the token limit, so it needs no tokenizing.
_SAFE_CHARS: Final = MAX_INPUT_TOKENS // 4

# Native vector length, and whether the model accepts a `dimensions` parameter.
OPENAI_MODELS: Final[dict[str, tuple[int, bool]]] = {
    "text-embedding-3-small": (1536, True),
    "text-embedding-3-large": (3072, True),
    "text-embedding-ada-002": (1536, False),
}
OLLAMA_MODELS: Final[dict[str, int]] = {
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
    "all-minilm": 384,
    "snowflake-arctic-embed": 1024,
    "bge-m3": 1024,
    "embeddinggemma": 768,
}


class OpenAIEmbedder(ProviderEmbedder):
    """Embeddings from the OpenAI API (or a compatible gateway at ``base_url``).

    ``model_id`` is ``openai:<model>``; ``dimension`` is ``dimensions`` when given (the
    ``text-embedding-3-*`` models shorten their vectors on request), else the model's
    native length. A model this package does not know needs ``dimensions``.
    ``timeout_seconds`` bounds a whole :meth:`embed` call, retries included;
    ``max_retries`` is passed to the SDK, which retries 408/409/429/5xx and honours
    ``Retry-After``.
    """

    provider = "openai"
    _dimensions_env: str = "SEMANTIC_CACHE_OPENAI_DIMENSIONS"

    def __init__(
        self,
        *,
        model: str = "text-embedding-3-small",
        dimensions: int | None = None,
        api_key: str,
        base_url: str | None = None,
        timeout_seconds: float | None = 30.0,
        max_retries: int = 2,
        batch_size: int = MAX_INPUTS_PER_REQUEST,
        encoding: tiktoken.Encoding | None = None,
    ) -> None:
        super().__init__(
            model=model,
            api_key=api_key,
            api_key_variable="SEMANTIC_CACHE_OPENAI_API_KEY",
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            batch_size=batch_size,
            max_batch_size=MAX_INPUTS_PER_REQUEST,
        )
        self.dimension, self._send_dimensions = self._resolve_dimension(model, dimensions)
        self._encoding = encoding
        self._encoding_loaded = encoding is not None
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            # The SDK's own timeout bounds each attempt; the deadline in embed() bounds all.
            timeout=timeout_seconds,
            max_retries=max_retries,
        )

    def _resolve_dimension(self, model: str, dimensions: int | None) -> tuple[int, int | None]:
        """(vector length, value of the request's ``dimensions`` or None to omit it)."""
        known = OPENAI_MODELS.get(model)
        if known is None:
            if dimensions is None:
                raise unknown_model_error(self.provider, model, self._dimensions_env)
            return dimensions, dimensions
        native, shortenable = known
        if dimensions is None or dimensions == native:
            return native, None
        if not shortenable or not 1 <= dimensions <= native:
            raise ConfigurationError(
                f"{self._dimensions_env}={dimensions} is not available for {model!r} "
                f"(native {native}{', shortenable' if shortenable else ', fixed'})"
            )
        return dimensions, dimensions

    async def _split(self, texts: list[str]) -> list[list[str]]:
        prepared = await self._prepare(texts)
        return pack_requests(prepared, max_items=self.batch_size, max_tokens=MAX_TOKENS_PER_REQUEST)

    async def _prepare(self, texts: list[str]) -> list[tuple[str, int]]:
        """Each text, truncated to the token limit, with an upper bound of its tokens."""
        texts = [sendable_text(text) for text in texts]
        if all(len(text) <= _SAFE_CHARS for text in texts):
            # Short texts (the usual lookup): no tokenizer, no thread hop.
            return [(text, 4 * len(text) + 1) for text in texts]
        return await asyncio.to_thread(self._truncate_all, texts)

    def _truncate_all(self, texts: list[str]) -> list[tuple[str, int]]:
        return [self._truncate(text) for text in texts]

    def _truncate(self, text: str) -> tuple[str, int]:
        encoding = self._get_encoding()
        if encoding is None:
            cut = _cut_utf8(text, MAX_INPUT_TOKENS)
            return cut, len(cut.encode("utf-8", "replace"))
        tokens = encoding.encode_ordinary(text)
        if len(tokens) <= MAX_INPUT_TOKENS:
            return text, len(tokens)
        keep = MAX_INPUT_TOKENS
        while True:
            # Decoding a cut can end inside a character (U+FFFD), which may re-encode to
            # more tokens: cut again until the text itself is within the limit.
            cut = encoding.decode(tokens[:keep])
            count = len(encoding.encode_ordinary(cut))
            if count <= MAX_INPUT_TOKENS:
                return cut, count
            keep -= count - MAX_INPUT_TOKENS

    def _get_encoding(self) -> tiktoken.Encoding | None:
        if not self._encoding_loaded:
            self._encoding_loaded = True
            self._encoding = _load_encoding(self.model)
        return self._encoding

    async def _request(self, batch: list[str]) -> list[list[float]]:
        try:
            if self._send_dimensions is None:
                response = await self._client.embeddings.create(model=self.model, input=batch)
            else:
                response = await self._client.embeddings.create(
                    model=self.model, input=batch, dimensions=self._send_dimensions
                )
            data = response.data
            if not isinstance(data, list) or len(data) != len(batch):
                raise EmbedderError(
                    f"{self!r} answered {len(data) if isinstance(data, list) else 'no'} "
                    f"embeddings for {len(batch)} inputs"
                )
            # The API documents `index`; order by it rather than trust the list order.
            ordered = sorted(data, key=lambda item: item.index)
            if [item.index for item in ordered] != list(range(len(batch))):
                raise EmbedderError(f"{self!r} answered embeddings with wrong indexes")
            return [item.embedding for item in ordered]
        except EmbedderError:
            raise
        except openai.APIStatusError as exc:
            raise EmbedderError(
                f"{self!r} failed: HTTP {exc.status_code} {shorten(exc.message)}"
            ) from exc
        except openai.APITimeoutError as exc:
            raise EmbedderError(f"{self!r} timed out") from exc
        except openai.APIConnectionError as exc:
            raise EmbedderError(f"{self!r} could not connect: {shorten(str(exc))}") from exc
        except (openai.OpenAIError, ValueError, TypeError, AttributeError) as exc:
            # Malformed bodies surface as validation, base64 or attribute errors.
            raise EmbedderError(
                f"{self!r} returned a malformed answer: {shorten(str(exc))}"
            ) from exc

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self._client.close()


class OllamaEmbedder(OpenAIEmbedder):
    """Embeddings from a local Ollama server through its OpenAI-compatible API.

    No key (the SDK is given a placeholder), no tiktoken: Ollama truncates inputs to the
    model's context window itself. ``model_id`` is ``ollama:<model>``. A model this package
    does not know needs ``dimensions``; for a known one, a different ``dimensions`` is sent
    to Ollama as the request's ``dimensions``.
    """

    provider = "ollama"
    _dimensions_env = "SEMANTIC_CACHE_OLLAMA_DIMENSIONS"

    def __init__(
        self,
        *,
        model: str = "nomic-embed-text",
        dimensions: int | None = None,
        base_url: str = OLLAMA_DEFAULT_BASE_URL,
        timeout_seconds: float | None = 30.0,
        max_retries: int = 2,
        batch_size: int = 512,
        max_input_chars: int = 100_000,
    ) -> None:
        if max_input_chars < 1:
            raise ConfigurationError(f"max_input_chars must be >= 1, not {max_input_chars}")
        self.max_input_chars = max_input_chars
        super().__init__(
            model=model,
            dimensions=dimensions,
            # Ollama ignores the key, but the SDK refuses to start without one.
            api_key="ollama",
            base_url=base_url,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            batch_size=batch_size,
        )

    def _resolve_dimension(self, model: str, dimensions: int | None) -> tuple[int, int | None]:
        native = OLLAMA_MODELS.get(model.split(":", 1)[0])
        if native is None:
            if dimensions is None:
                raise ConfigurationError(
                    f"ollama model {model!r} is not one this package knows: "
                    f"set {self._dimensions_env} to its vector length"
                )
            # Unknown model: `dimensions` states its length; asking for it might be refused.
            return dimensions, None
        if dimensions is None or dimensions == native:
            return native, None
        return dimensions, dimensions

    async def _prepare(self, texts: list[str]) -> list[tuple[str, int]]:
        return [(sendable_text(text[: self.max_input_chars]), 1) for text in texts]


def _load_encoding(model: str) -> tiktoken.Encoding | None:
    try:
        import tiktoken
    except ModuleNotFoundError:
        log.warning("tiktoken is not installed: inputs are cut at %d bytes", MAX_INPUT_TOKENS)
        return None
    try:
        try:
            return tiktoken.encoding_for_model(model)
        except KeyError:
            # A model tiktoken does not map (a gateway's name): OpenAI's embedding encoding.
            return tiktoken.get_encoding("cl100k_base")
    except Exception as exc:  # network, cache or file errors: all mean "no encoding"
        log.warning(
            "the tiktoken encoding for %r could not be loaded (%s): inputs over %d tokens "
            "are cut at %d UTF-8 bytes instead",
            model,
            exc,
            MAX_INPUT_TOKENS,
            MAX_INPUT_TOKENS,
        )
        return None


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits ``max_bytes``."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")
