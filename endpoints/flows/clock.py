"""The engine's clock: what time it is, and a call at a given time.

The flow engine and the scheduler never sleep on their own: every timer (a ``wait`` state's
``seconds``/``until``/``timeout``, a retry's delay, a cron schedule) is a :meth:`Clock.at`. The
bus runs on :class:`SystemClock`; tests hand in a :class:`ManualClock` and move it forward, so
that a schedule fires without a minute-long sleep.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "Timer"]


class Timer(Protocol):
    """A call planned by :meth:`Clock.at`."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch, and calls at a given such time."""

    def now(self) -> float: ...

    def at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` (on the event loop) once ``now()`` has reached ``when``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and the event loop's timers."""

    def now(self) -> float:
        return time.time()

    def at(self, when: float, callback: Callable[[], None]) -> Timer:
        delay = max(0.0, when - time.time())
        return asyncio.get_running_loop().call_later(delay, callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Planned:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told (:meth:`advance`, :meth:`set`): for tests.

    Args:
        start: the time it shows at first, in seconds since the epoch.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._planned: list[tuple[float, int, _Planned]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def at(self, when: float, callback: Callable[[], None]) -> Timer:
        planned = _Planned(callback)
        heapq.heappush(self._planned, (when, next(self._order), planned))
        if when <= self._now:
            asyncio.get_running_loop().call_soon(self._fire)
        return planned

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        self.at(self._now + seconds, wake)
        await future

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward and make the calls that are now due."""
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        """Move the clock to ``when`` (never back) and make the calls that are now due."""
        self._now = max(self._now, when)
        self._fire()

    def _fire(self) -> None:
        while self._planned and self._planned[0][0] <= self._now:
            _, _, planned = heapq.heappop(self._planned)
            if not planned.cancelled:
                planned.callback()
