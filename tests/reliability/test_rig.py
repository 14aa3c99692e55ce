"""The reliability rig's own clock: a pause of the load generator's loop is found and
taken off the answers that spanned it, and only off those."""

from __future__ import annotations

import asyncio
import time

from tests.faults import LoopLag


async def test_a_blocked_loop_is_measured_and_only_inside_the_span() -> None:
    with LoopLag() as lag:
        await asyncio.sleep(0.05)
        before = time.monotonic()
        time.sleep(0.3)  # noqa: ASYNC251 (the loop stands still, as in a collector's full pass)
        await asyncio.sleep(0.05)
        after = time.monotonic()
    assert 0.28 <= lag.stalled_between(before, after) <= after - before
    assert 0.28 <= lag.longest_between(before, after) <= lag.stalled_between(before, after)
    start, end = max(lag.stalls, key=lambda s: s[1] - s[0])
    assert before <= start < end <= after
    assert lag.stalled_between(start + 0.1, end + 1) == end - (start + 0.1)
    assert lag.stalled_between(after, after + 1) == 0.0


async def test_a_stall_is_counted_before_the_ticker_has_seen_it_end() -> None:
    with LoopLag() as lag:
        await asyncio.sleep(0.05)
        before = time.monotonic()
        time.sleep(0.3)  # noqa: ASYNC251 (no await after it: the ticker has not run)
        after = time.monotonic()
        assert 0.28 <= lag.stalled_between(before, after) <= after - before
