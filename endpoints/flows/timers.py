"""The engine's timers: waits that end at a time, the timeouts of waits, and retries' delays.

A waiting execution (WAITING, WAITING_UNTIL, USER_INPUT, SELECT_FLOW) with a ``deadline`` holds
no task, only a :meth:`Clock.at <endpoints.flows.clock.Clock.at>` timer. The timer is armed when
the wait is committed here, and from the change feed when it is committed by another process
(or before a restart: recovery arms what it finds). When it fires, the execution is read again:
still waiting at that deadline, it takes its ``success`` transition (a wait for a time) or its
``timeout`` one; moved to a later deadline, the timer is armed again; otherwise nothing happens.
Several processes arming the same deadline are harmless: the move is a conditional write, so
one of them makes it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from endpoints.flows.clock import Timer
from endpoints.flows.definition import StateSpec
from endpoints.flows.durations import MAX_SECONDS, within_bound
from endpoints.flows.model import WAITING_UNTIL, WAITS

if TYPE_CHECKING:
    from endpoints.flows.engine import Engine

__all__ = ["Timers", "retry_delays"]

Key = tuple[str, str]


def retry_delays(state: StateSpec, skip: bool) -> list[float]:
    """The pauses before each new try of ``state``'s work: none when the flow skips retries;
    else ``retry.max`` of them, from ``retry.delay``, each ``retry.backoff`` times the last, none
    longer than the bound of every duration (:data:`~endpoints.flows.durations.MAX_SECONDS`,
    which also caps a delay stored before CREATE checked it)."""
    if skip:
        return []
    delays: list[float] = []
    delay = state.retry.delay
    for _ in range(state.retry.max):
        delay = delay if within_bound(delay) else MAX_SECONDS
        delays.append(delay)
        delay *= state.retry.backoff
    return delays


class Timers:
    """One timer per waiting execution that has a deadline, in this process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._timers: dict[Key, tuple[float, Timer]] = {}

    async def sleep(self, seconds: float) -> None:
        """A retry's delay, on the engine's clock."""
        await self.engine.clock.sleep(seconds)

    def committed(self, namespace: str, record: dict[str, Any]) -> None:
        """An execution's commit (here, or from the feed): arm its deadline if it waits for one."""
        if record.get("deadline") is not None and record.get("status") in WAITS and not self.engine.stopping:
            self.arm(namespace, record)

    def arm(self, namespace: str, record: dict[str, Any]) -> None:
        """Arm the execution's timer at its ``deadline`` (once: the same deadline is not armed twice)."""
        key = (namespace, record["id"])
        deadline = record.get("deadline")
        planned = self._timers.get(key)
        if deadline is None or (planned is not None and planned[0] == deadline):
            return
        if planned is not None:
            planned[1].cancel()
        timer = self.engine.clock.at(deadline, lambda: self._due(key, deadline))
        self._timers[key] = (deadline, timer)

    def stop(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _due(self, key: Key, deadline: float) -> None:
        if self._timers.get(key, (None,))[0] == deadline:
            del self._timers[key]
        if not self.engine.stopping:
            asyncio.get_running_loop().create_task(self._fire(*key))

    async def _fire(self, namespace: str, objectid: str) -> None:
        record = await self.engine.repository.get(namespace, objectid)
        if record is None or record["status"] not in WAITS or record.get("deadline") is None:
            return
        if record["deadline"] > self.engine.clock.now():  # moved to a later time meanwhile
            self.arm(namespace, record)
            return
        on = "success" if record["status"] == WAITING_UNTIL else "timeout"
        await self.engine.runner.resume_waiting(namespace, record, on)
