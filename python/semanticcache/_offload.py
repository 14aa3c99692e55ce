"""CPU work on long texts runs on a worker thread, so the event loop's other requests
are not held up by one long prompt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

__all__ = ["OFF_LOOP_CHARS", "off_loop_if_long"]

OFF_LOOP_CHARS: Final = 64 * 1024
"""Past this many characters (or bytes), normalising, hashing, scanning or embedding a
text runs on a worker thread: on the loop, a 64 KiB text costs a few milliseconds."""


async def off_loop_if_long[T](size: int, work: Callable[[], T]) -> T:
    """``work()``, on a worker thread when ``size`` exceeds :data:`OFF_LOOP_CHARS`."""
    if size > OFF_LOOP_CHARS:
        return await asyncio.to_thread(work)
    return work()
