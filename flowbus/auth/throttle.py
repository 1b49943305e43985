"""Login throttling: failed logins counted per username and per client address.

A login (a token login or HTTP Basic) is refused with ``RATE_LIMITED`` while either its username
or its client address has failed too often within the window, with the seconds until the oldest
of those failures leaves the window as ``retryAfter``.
"""

from __future__ import annotations

import time
from collections import deque

from flowbus.errors import RateLimited

__all__ = ["LoginThrottle"]

_SWEEP_AT = 10_000
"""Remembered usernames and addresses past which those whose failures all left the window are dropped."""


class LoginThrottle:
    """Counts failed logins per username and per client address in a sliding window.

    Args:
        per_user: failures of one username allowed within the window.
        per_peer: failures from one client address allowed within the window.
        window: the window, in seconds.

    Only failures are remembered, and only while they may still count: logins that succeed, and
    names tried once long ago, take no memory (many names tried once would otherwise stay forever).
    """

    def __init__(self, per_user: int = 5, per_peer: int = 20, window: float = 60.0) -> None:
        self.limits = {"user": per_user, "peer": per_peer}
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._sweep_at = _SWEEP_AT

    def remembered(self) -> int:
        """How many usernames and addresses failures are remembered for."""
        return len(self._failures)

    def check(self, username: str, peer: str) -> None:
        """Raise RateLimited (with retry_after) if either key has failed too often lately."""
        now = time.monotonic()
        for key in (("user", username), ("peer", peer)):
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self.limits[key[0]]:
                wait = max(1, int(failures[0] + self.window - now) + 1)
                raise RateLimited(f"Too many failed logins; retry after {wait} s", retry_after=wait)

    def failed(self, username: str, peer: str) -> None:
        """Count a failed login of ``username`` from ``peer``."""
        now = time.monotonic()
        for key in (("user", username), ("peer", peer)):
            failures = self._recent(key, now)
            if failures is None:
                failures = self._failures[key] = deque()
            failures.append(now)
        if len(self._failures) > self._sweep_at:
            self._sweep(now)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        """The failures of ``key`` still in the window, or None (and forgotten) if there are none."""
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def _sweep(self, now: float) -> None:
        cutoff = now - self.window
        self._failures = {k: v for k, v in self._failures.items() if v[-1] > cutoff}
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._failures))
