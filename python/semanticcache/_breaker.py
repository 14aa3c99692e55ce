"""A small circuit breaker: after repeated failures, skip a dependency for a cool-down.

A dead embedder or database should cost each request nothing, not its full timeout. The
breaker is *closed* (calls pass) until ``failures`` calls in a row fail; then it is
*open* (calls are skipped) for ``cooldown`` seconds; then *half-open*: one trial call
passes, and its outcome closes the breaker or opens it for another cool-down. State is
per process and per dependency; it is not shared between workers (each finds out on its
own, at the cost of ``failures`` timeouts).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Literal

from semanticcache.errors import ConfigurationError

__all__ = ["BreakerState", "CircuitBreaker"]

_log = logging.getLogger("semanticcache.breaker")

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures of one dependency and says whether to call it.

    Usage: ``if breaker.allow(): ...`` then exactly one of :meth:`success`,
    :meth:`failure` or :meth:`release` (the call was abandoned, e.g. cancelled).
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ConfigurationError(f"breaker failures must be an integer >= 1, not {failures}")
        if not (math.isfinite(cooldown) and cooldown > 0):
            raise ConfigurationError(f"breaker cooldown must be > 0 seconds, not {cooldown}")
        self.name = name
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        # Told each state the breaker moves to (the metrics' gauge).
        self._on_change = on_change

    def _changed(self, state: BreakerState) -> None:
        if self._on_change is not None:
            self._on_change(state)

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` (skipping calls) or ``half_open`` (a trial may pass)."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether to call the dependency now (when half-open: one caller at a time)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            self._changed("half_open")
            return True
        return False

    def success(self) -> None:
        """The call succeeded: close the breaker."""
        if self._opened_at is not None:
            _log.info("%s is back: circuit breaker closed", self.name)
            self._changed("closed")
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        """The call failed or timed out."""
        if self._trial or self._opened_at is not None:
            # The half-open trial failed: another full cool-down.
            self._trial = False
            self._opened_at = self._clock()
            self._changed("open")
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._changed("open")
            _log.warning(
                "%s failed %d times in a row: skipping it for %.1f s",
                self.name,
                self._failures,
                self._cooldown,
            )

    def release(self) -> None:
        """The call was abandoned without an outcome: let another trial through."""
        self._trial = False
