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


class LoginThrottle:
    """Counts failed logins per username and per client address in a sliding window."""

    def __init__(self, per_user: int = 5, per_peer: int = 20, window: float = 60.0) -> None:
        self.limits = {"user": per_user, "peer": per_peer}
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def check(self, username: str, peer: str) -> None:
        """Raise RateLimited (with retry_after) if either key has failed too often lately."""
        now = time.monotonic()
        for key in (("user", username), ("peer", peer)):
            failures = self._recent(key, now)
            if len(failures) >= self.limits[key[0]]:
                wait = max(1, int(failures[0] + self.window - now) + 1)
                raise RateLimited(f"Too many failed logins; retry after {wait} s", retry_after=wait)

    def failed(self, username: str, peer: str) -> None:
        now = time.monotonic()
        for key in (("user", username), ("peer", peer)):
            self._recent(key, now).append(now)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
