"""Alias of :mod:`semanticcache` under the distribution's name: the same objects."""

from semanticcache import *  # noqa: F403
from semanticcache import __all__ as __all__
from semanticcache import __version__ as __version__
