"""What the engine picks up when it starts: the executions a previous run (of this process, or
of one that crashed) left unfinished.

Every transition is committed before the next state starts, so the store holds where each
execution stands. At start, in every namespace that holds executions:

- a RUNNING execution starts its current state again (a ``call`` in flight at a crash is made
  again: at least once), or becomes INTERRUPTED when its flow says ``onCrash: interrupt``;
- a waiting one (WAITING, WAITING_UNTIL, USER_INPUT, SELECT_FLOW, or PAUSED from one) keeps
  waiting: its timer is armed again, and fires at once if it fell due meanwhile;
- a parent waiting for a child that ended meanwhile takes its transition;
- a WAITING execution that keeps an event for its wait (sent while it was paused) takes it;
- QUEUED executions start as room allows (the queue looks once recovery is done);
- an execution stored before context ids existed that has not ended gets its context id (ended
  ones keep none, and are reached by their id).

An execution RUNNING in a process that is still alive is resumed too by a process that starts
on the same store: a second runner, whose commits the version check keeps from clashing, but
whose current ``call`` may be made twice.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from endpoints.flows.model import (
    FINAL,
    INTERRUPTED,
    PAUSED,
    QUEUED,
    RUNNING,
    SELECT_FLOW,
    USER_INPUT,
    WAITING,
    WAITING_UNTIL,
)
from endpoints.flows.runner import has_queued_for_its_wait
from flowbus import Conflict, DoesNotExist, iso_ms

if TYPE_CHECKING:
    from endpoints.flows.engine import Engine

__all__ = ["Recovery"]

RECOVERED = (RUNNING, WAITING, WAITING_UNTIL, USER_INPUT, SELECT_FLOW, PAUSED)
"""The statuses recovery looks for, in this order."""


class Recovery:
    """Resumes, interrupts and re-arms the executions found in the store at start."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def recover(self) -> None:
        """Resume RUNNING executions (or interrupt them), re-arm the timers of waiting ones, queue
        QUEUED ones, and move parents whose child ended meanwhile."""
        repository = self.engine.repository
        for namespace in await repository.namespaces():
            for status in RECOVERED:
                for record in await repository.find(namespace, {"status": status}):
                    numbered = await self._numbered(namespace, record)
                    if numbered is not None:
                        await self._recover_one(namespace, numbered)
            for record in await repository.find(namespace, {"status": QUEUED}):
                await self._numbered(namespace, record)
        self.engine.queue.look()

    async def _numbered(self, namespace: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """The execution with a context id: given one now if it was stored before context ids
        (None if it is gone meanwhile)."""
        if record.get("contextId") is not None:
            return record
        engine = self.engine
        try:
            return await engine.repository.number(namespace, record, await engine.context_ids.take())
        except Conflict:  # moved meanwhile (by another process, which may have numbered it): as it is now
            return await engine.repository.get(namespace, record["id"])
        except DoesNotExist:
            return None

    async def _recover_one(self, namespace: str, record: dict[str, Any]) -> None:
        engine = self.engine
        status = record["status"]
        if status == RUNNING:
            definition = await engine.definition(record["revision"])
            if definition.data.get("onCrash") == "interrupt":
                await self._interrupt(namespace, record)
            elif not engine.runner.runs((namespace, record["id"])):
                engine.runner.spawn(namespace, record)
            return
        if record.get("deadline") is not None:
            engine.timers.arm(namespace, record)
        if has_queued_for_its_wait(record):  # a resume committed, its kept events not yet delivered
            await engine.runner.deliver_queued(namespace, record)
        child = record.get("child")
        if status == WAITING and child:
            found = await engine.repository.get(namespace, child)
            if found is not None and found["status"] in FINAL:
                await engine.runner.child_ended(namespace, found)

    async def _interrupt(self, namespace: str, record: dict[str, Any]) -> None:
        """End a RUNNING execution whose flow says ``onCrash: interrupt``."""
        changes = {
            "status": INTERRUPTED,
            "waiting": False,
            "message": "Interrupted: the bus stopped while it ran",
            "ended": iso_ms(self.engine.clock.now()),
        }
        with contextlib.suppress(Conflict, DoesNotExist):
            await self.engine.repository.transition(namespace, record, changes, handled=False)
