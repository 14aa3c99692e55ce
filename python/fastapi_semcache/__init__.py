"""Alias of :mod:`semanticcache` under the distribution's name: the same objects."""

from typing import TYPE_CHECKING

import semanticcache as _semanticcache
from semanticcache import *  # noqa: F403
from semanticcache import __all__ as __all__
from semanticcache import __version__ as __version__

if TYPE_CHECKING:
    from semanticcache.proxy import (
        create_semantic_cache_proxy_app as create_semantic_cache_proxy_app,
    )


def __getattr__(name: str) -> object:
    # Names the package loads on first access (the proxy and its extra) come from it.
    return getattr(_semanticcache, name)
