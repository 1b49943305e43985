"""The bound on executions running at once in one process, and the QUEUED executions that wait
for room.

An execution that starts (or resumes from a wait) while ``concurrency`` executions run here is
committed QUEUED; whenever a slot frees, the oldest QUEUED executions of every namespace known
here are taken, each by a conditional write to RUNNING, so that of several processes sharing a
store one takes it. Looking at the store costs a query per namespace: it is done only while some
execution may be queued (one was queued, here or, by the change feed, elsewhere, since a look
found none).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from endpoints.flows.model import RUNNING
from flowbus import Conflict, DoesNotExist

if TYPE_CHECKING:
    from endpoints.flows.engine import Engine

__all__ = ["Queue"]

logger = logging.getLogger("flowbus.flows")


class Queue:
    """Slots for running executions, and the task that starts QUEUED ones as slots free."""

    def __init__(self, engine: Engine, concurrency: int) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self._running = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._maybe_queued = True  # until a look at the store finds no QUEUED execution
        self._marks = 0  # grows whenever an execution is queued (a look may have missed it)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._dequeue())

    def stop(self) -> asyncio.Task[None] | None:
        """Stop taking QUEUED executions; answers the task to wait for."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    # -- slots -------------------------------------------------------------------------------

    def full(self) -> bool:
        """Whether an execution that would run now has to wait QUEUED."""
        return self._running >= self.concurrency

    def take_slot(self) -> bool:
        """Hold a slot for an execution about to start, if there is room (none while stopping)."""
        if self.full() or self.engine.stopping:
            return False
        self._running += 1  # held from now: a burst of starts cannot overshoot
        return True

    def occupy(self) -> None:
        """Hold a slot for an execution that runs whether or not there is room (resumed, taken)."""
        self._running += 1

    def release(self, *, freed: bool = True) -> None:
        """Give a slot back; ``freed``: an execution stopped running here (room for a queued one)."""
        self._running -= 1
        if freed and self._maybe_queued:  # a look at the store costs a scan: only when something may wait
            self._wakeup.set()

    # -- QUEUED executions -------------------------------------------------------------------

    def queued(self) -> None:
        """An execution is QUEUED (here or in another process): look for room to start it."""
        self._maybe_queued = True
        self._marks += 1
        self._wakeup.set()

    def look(self) -> None:
        """Look at the store for QUEUED executions (after recovery)."""
        self._wakeup.set()

    async def _dequeue(self) -> None:
        """Start QUEUED executions, oldest first, while there is room."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._start_queued()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("starting queued flow executions failed")

    async def _start_queued(self) -> None:
        found, marks = False, self._marks
        repository = self.engine.repository
        for namespace in repository.known_namespaces:
            while not self.full():
                items = await repository.queued(namespace, self.concurrency)
                if not items:
                    break
                found = True
                for record in items:
                    if self.full():
                        return
                    await self._take(namespace, record)
            else:
                found = True  # no room to look further: some may still wait
        if not found and marks == self._marks:
            self._maybe_queued = False

    async def _take(self, namespace: str, record: dict[str, Any]) -> None:
        try:
            stored = await self.engine.repository.transition(namespace, record, {"status": RUNNING})
        except (Conflict, DoesNotExist):
            return  # another process took it
        self.engine.runner.spawn(namespace, stored)
