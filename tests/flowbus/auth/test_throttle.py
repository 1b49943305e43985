"""The login throttle limits failures per username and per address, and remembers only failures
that may still count."""

from __future__ import annotations

import pytest

from flowbus.auth.throttle import LoginThrottle
from flowbus.errors import RateLimited


def test_a_username_is_limited_after_its_failures_and_others_are_not() -> None:
    throttle = LoginThrottle(per_user=3, per_peer=100, window=60)
    for _ in range(3):
        throttle.check("alice", "10.0.0.1")
        throttle.failed("alice", "10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        throttle.check("alice", "10.0.0.2")
    assert 1 <= refused.value.retry_after <= 61  # type: ignore[operator]
    throttle.check("bob", "10.0.0.1")


def test_an_address_is_limited_whatever_the_usernames() -> None:
    throttle = LoginThrottle(per_user=100, per_peer=2, window=60)
    throttle.failed("alice", "10.0.0.1")
    throttle.failed("bob", "10.0.0.1")
    with pytest.raises(RateLimited):
        throttle.check("carol", "10.0.0.1")
    throttle.check("carol", "10.0.0.2")


def test_logins_that_do_not_fail_take_no_memory() -> None:
    throttle = LoginThrottle()
    for i in range(1000):
        throttle.check(f"user-{i}", f"10.0.{i // 256}.{i % 256}")
    assert throttle.remembered() == 0


def test_failures_that_left_the_window_are_forgotten_even_for_names_never_tried_again() -> None:
    """Many names tried once each (a spray) do not stay in memory once their failures no longer count."""
    throttle = LoginThrottle(window=0)  # every failure has left the window by the next one
    for i in range(25_000):
        throttle.failed(f"user-{i}", "10.0.0.1")
    assert throttle.remembered() <= 10_001
