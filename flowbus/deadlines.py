"""Call timeouts for many calls at once, with one timer instead of one per call.

``asyncio.timeout()`` schedules and cancels a timer handle for every call, which is a large share
of what a cheap call costs. :class:`Deadlines` instead notes each running call's task and
deadline in a dict, and one periodic sweep (running only while calls are) cancels the tasks
whose deadline has passed. A call therefore times out between ``seconds`` and
``seconds + resolution`` after it started.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Deadlines"]


class Deadlines:
    """Cancels the tasks of calls that run longer than ``seconds``.

    Usage, by whoever runs a call in a task of its own::

        deadlines.watch(task)          # the call's clock starts
        ...                            # and in the call, on CancelledError:
        if deadlines.expired(task):    # it was cancelled for lateness (and that is taken back)
            ...
        deadlines.leave(task)          # when the call is over, whatever its outcome
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.resolution = min(1.0, seconds / 10)
        self._running: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeping: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Start the clock of the call running in ``task``."""
        loop = task.get_loop()
        self._running[task] = loop.time() + self.seconds
        if self._sweeping is None:
            self._sweeping = loop.call_later(self.resolution, self._sweep, loop)

    def leave(self, task: asyncio.Task[Any]) -> None:
        """Stop the clock of ``task``'s call (whatever its outcome)."""
        self._running.pop(task, None)
        if task in self._expired:  # cancelled for lateness, but the call swallowed the cancellation
            self._expired.discard(task)
            task.uncancel()

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` was cancelled for running out of time; if so, take the cancellation back."""
        if task is None or task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = [task for task, deadline in self._running.items() if deadline <= now]
        for task in late:
            del self._running[task]
            self._expired.add(task)
            task.cancel()
        self._sweeping = loop.call_later(self.resolution, self._sweep, loop) if self._running else None
