"""Alias of :mod:`semanticcache` under the distribution's name: the same objects."""

from typing import TYPE_CHECKING

import semanticcache as _semanticcache
from semanticcache import *  # noqa: F403
from semanticcache import __all__ as __all__
from semanticcache import __version__ as __version__

if TYPE_CHECKING:
    from semanticcache import CohereEmbedder as CohereEmbedder
    from semanticcache import HuggingFaceEmbedder as HuggingFaceEmbedder
    from semanticcache import LocalEmbedder as LocalEmbedder
    from semanticcache import OllamaEmbedder as OllamaEmbedder
    from semanticcache import OpenAIEmbedder as OpenAIEmbedder
    from semanticcache import VoyageEmbedder as VoyageEmbedder
    from semanticcache import (
        create_semantic_cache_proxy_app as create_semantic_cache_proxy_app,
    )


def __getattr__(name: str) -> object:
    # Names the package loads on first access (those of an extra) come from it.
    return getattr(_semanticcache, name)
