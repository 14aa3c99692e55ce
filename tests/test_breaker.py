"""CircuitBreaker state machine, on a fake clock."""

from __future__ import annotations

import pytest

from semanticcache._breaker import CircuitBreaker
from semanticcache.errors import ConfigurationError


def state(b: CircuitBreaker) -> str:
    # A call, not the property: mypy would narrow b.state after the first assert.
    return b.state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker("dep", failures=3, cooldown=10.0, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert state(b) == "closed"
    assert b.allow()
    b.failure()
    assert state(b) == "open"
    assert not b.allow()
    clock.now += 9.9
    assert not b.allow()
    clock.now += 0.1
    assert state(b) == "half_open"
    assert b.allow()  # the one trial
    assert not b.allow()  # everyone else waits for its outcome
    b.success()
    assert state(b) == "closed"
    assert b.allow()


def test_a_success_resets_the_count() -> None:
    b = CircuitBreaker("dep", failures=2, cooldown=1.0, clock=Clock())
    b.failure()
    b.success()
    b.failure()
    assert state(b) == "closed"


def test_a_failed_trial_opens_for_another_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker("dep", failures=1, cooldown=5.0, clock=clock)
    b.failure()
    clock.now += 5.0
    assert b.allow()
    b.failure()
    assert state(b) == "open"
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()


def test_an_abandoned_trial_lets_the_next_one_through() -> None:
    clock = Clock()
    b = CircuitBreaker("dep", failures=1, cooldown=1.0, clock=clock)
    b.failure()
    clock.now += 1.0
    assert b.allow()
    b.release()
    assert b.allow()


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 1.0), (1, 0.0), (1, float("nan"))])
def test_invalid_configuration(failures: int, cooldown: float) -> None:
    with pytest.raises(ConfigurationError, match="breaker"):
        CircuitBreaker("dep", failures=failures, cooldown=cooldown)


def test_each_state_change_is_told_once() -> None:
    clock = Clock()
    seen: list[str] = []
    b = CircuitBreaker("dep", failures=2, cooldown=5.0, clock=clock, on_change=seen.append)
    b.failure()
    b.success()  # closed already: no change
    b.failure()
    b.failure()
    assert seen == ["open"]
    assert not b.allow()
    clock.now += 5.0
    assert b.allow()  # the trial
    b.failure()
    clock.now += 5.0
    assert b.allow()
    b.success()
    assert seen == ["open", "half_open", "open", "half_open", "closed"]
