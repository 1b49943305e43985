"""Runs executions' states: one task per RUNNING execution in this process, the moves of
waiting executions (an event, an answer, a timer, a child that ended), and the commands that
pause, resume or stop an execution.

A task runs the execution's current state (:func:`~endpoints.flows.actions.attempt`, tried
again as its ``retry`` says), then commits where it leads (:mod:`endpoints.flows.steps`) by a
conditional write, and goes on while the execution stays RUNNING. Every transition is committed
before the next state starts: a state's work runs between two commits. When another writer
came between (a tag, a command), the task reads the execution again: if it still stands where
it stood, the step's changes are written on the fresh version; else (stopped, paused from
outside, moved by another process) the task leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from endpoints.flows.actions import attempt
from endpoints.flows.definition import Definition, StateSpec
from endpoints.flows.expressions import ExpressionError
from endpoints.flows.model import CANCELED, FINAL, PAUSED, QUEUED, RUNNING, SUCCESS, WAITING, WAITS
from endpoints.flows.steps import (
    Outcome,
    context_of,
    failed,
    next_state,
    recorded,
    resumed,
    same_place,
    taken,
    transition,
)
from endpoints.flows.timers import retry_delays
from flowbus import Conflict, DoesNotExist, iso_ms

if TYPE_CHECKING:
    from endpoints.flows.engine import Engine

__all__ = ["MAX_QUEUED", "Runner", "has_queued_for_its_wait", "keeps_events"]

logger = logging.getLogger("flowbus.flows")

Key = tuple[str, str]

MAX_QUEUED = 100
"""The most events one execution keeps for its waits while it is paused or resuming."""


class Runner:
    """The tasks of the executions running in this process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    def spawn(self, namespace: str, record: dict[str, Any], *, held: bool = False) -> None:
        """Run the RUNNING execution ``record`` here (unless it already runs here).

        ``held``: a slot was taken for it already (:meth:`Queue.take_slot <endpoints.flows.queue.Queue.take_slot>`).
        """
        queue = self.engine.queue
        key = (namespace, record["id"])
        if key in self._tasks:
            if held:
                queue.release(freed=False)
            return
        if not held:
            queue.occupy()
        task = asyncio.get_running_loop().create_task(self._run(namespace, record))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._ended(key))

    def runs(self, key: Key) -> bool:
        """Whether the execution runs in a task of this process."""
        return key in self._tasks

    def cancel(self, key: Key) -> None:
        """Abandon the execution's current state (a hard stop)."""
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()

    async def stop(self, *others: asyncio.Task[None] | None) -> None:
        """Cancel every task (their executions stay RUNNING, and resume on the next start), and
        wait for them and ``others``."""
        tasks = [*self._tasks.values(), *(task for task in others if task is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _ended(self, key: Key) -> None:
        self._tasks.pop(key, None)
        self.engine.queue.release()

    # -- running -----------------------------------------------------------------------------

    async def _run(self, namespace: str, record: dict[str, Any] | None) -> None:
        last = record
        try:
            while record is not None and record["status"] == RUNNING:
                last = record
                record = await self._step(namespace, record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, or a store that failed: the execution ends, never hangs
            logger.exception("flow execution failed inside the engine")
            if last is not None:
                changes = failed(f"internal error: {type(exc).__name__}", self.engine.clock.now())
                with contextlib.suppress(Exception):
                    stored = await self.engine.repository.transition(namespace, last, changes)
                    self.engine.committed(namespace, stored)

    async def _step(self, namespace: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """Run the current state and commit where it leads; None once the execution is not ours."""
        command = record.get("command")
        if command:
            return await self._obey(namespace, record, command)
        definition = await self.engine.definition(record["revision"])
        state = definition.states[record["currentState"]]
        clock = self.engine.clock
        started = clock.now()
        outcome = await self._attempts(namespace, record, definition, state)
        changes = _advance(definition, state, record, outcome, started, clock.now())
        return await self._commit(namespace, record, changes)

    async def _obey(self, namespace: str, record: dict[str, Any], command: str) -> dict[str, Any] | None:
        """A command that waited for the state to end: pause, or stop."""
        if command == "pause":
            changes: dict[str, Any] = {"status": PAUSED, "pausedFrom": RUNNING, "command": None}
        else:
            changes = {"status": CANCELED, "command": None, "waiting": False, "ended": iso_ms(self.engine.clock.now())}
        return await self._commit(namespace, record, changes)

    async def _commit(self, namespace: str, record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any] | None:
        """Write a step's changes on the version read; when another writer came between (a tag, a
        command), read again and write once more if the execution still stands where it stood."""
        repository = self.engine.repository
        if record.get("resuming") and changes.get("status", RUNNING) != RUNNING:
            changes = changes | {"resuming": None}  # it waits, ends or pauses: resumed no longer
        while True:
            try:
                stored = await repository.transition(namespace, record, changes)
            except Conflict:
                fresh = await repository.get(namespace, record["id"])
                if fresh is None or not same_place(fresh, record):
                    return None  # stopped, paused from outside, or moved by another runner
                record = fresh  # only tags or a command changed: the step's changes still hold
                continue
            self.engine.committed(namespace, stored)
            return stored

    async def _attempts(
        self, namespace: str, record: dict[str, Any], definition: Definition, state: StateSpec
    ) -> Outcome:
        """The state's work, tried again as its ``retry`` says; the last failure if all fail."""
        delays = retry_delays(state, bool(definition.data.get("skipRetries")))
        engine = self.engine
        number = 1
        while True:
            outcome = await attempt(engine, namespace, record, state)
            outcome.attempts = number
            if outcome.on != "error" or number > len(delays):
                break
            await engine.timers.sleep(delays[number - 1])
            number += 1
        if outcome.on == "error" and state.proceed_on_failure:
            outcome.on = "success"  # the error stays recorded in the state's context
        return outcome

    # -- commands ----------------------------------------------------------------------------

    async def command(
        self,
        namespace: str,
        record: dict[str, Any],
        command: str,
        kind: int = 0,
        *,
        again: bool = True,
        by: str | None = None,
    ) -> dict[str, Any]:
        """Pause, resume or stop an execution (``kind`` 0: after its current state, 1: now), as
        the user ``by`` (see :meth:`Repository.transition <endpoints.flows.repository.Repository.transition>`).

        ``again``: when another writer changed the execution since ``record`` was read, judge the
        command again on the fresh record; False for a command made on a given version.

        Raises:
            Conflict: the command does not fit the execution's status (nothing is changed), or
                another writer changed it meanwhile.
        """
        for _ in range(20):
            changes = _command_changes(command, kind, record["status"], record, iso_ms(self.engine.clock.now()))
            try:
                stored = await self.engine.repository.transition(namespace, record, changes, by=by)
                break
            except Conflict:  # the runner committed a step meanwhile: judge the command again
                if not again:
                    raise
                fresh = await self.engine.repository.get(namespace, record["id"])
                if fresh is None:
                    raise DoesNotExist() from None
                record = fresh
        else:
            raise Conflict("The execution keeps changing: try again")
        self.engine.committed(namespace, stored)
        key = (namespace, stored["id"])
        if stored["status"] in FINAL:
            self.cancel(key)  # a hard stop: the state's work is abandoned
        if stored["status"] == RUNNING:
            self.spawn(namespace, stored)
        elif stored["status"] == QUEUED:
            self.engine.queue.queued()
        return stored

    # -- waiting executions that move --------------------------------------------------------

    async def resume_waiting(
        self,
        namespace: str,
        record: dict[str, Any],
        on: str,
        *,
        event: dict[str, Any] | None = None,
        result: Any = None,
        by: str | None = None,
        also: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Move a waiting execution on ``on`` (an event name, ``success``, ``timeout``), as the
        user ``by`` (who sent the event or the answer; its own user when None); None when
        another writer moved it first (it is no longer waiting at the version read), or when
        ``event`` is given and none of the state's transitions on it holds (it leaves the
        execution waiting, as an event it does not wait for would). ``also``: more changes,
        written in the same commit."""
        engine = self.engine
        definition = await engine.definition(record["revision"])
        state = definition.states[record["currentState"]]
        if event is not None and not _takes(state, record, on, event):
            return None
        changes = resumed(definition, state, record, on, event, result, engine.clock.now()) | (also or {})
        if changes.get("status") == RUNNING and engine.queue.full():
            changes["status"] = QUEUED
        try:
            stored = await engine.repository.transition(namespace, record, changes, by=by)
        except (Conflict, DoesNotExist):
            return None
        engine.committed(namespace, stored)
        if stored["status"] == RUNNING:
            self.spawn(namespace, stored)
        elif stored["status"] == QUEUED:
            engine.queue.queued()
        return stored

    # -- events addressed to one execution --------------------------------------------------

    async def send(
        self, namespace: str, record: dict[str, Any], name: str, event: dict[str, Any], by: str | None = None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """An event addressed to one execution (by its id). Answers ``(moved, None)`` with the
        record it moved to when the execution waits for the event (None when no transition on it
        holds); ``(None, kept)`` with the record that keeps it in ``queuedEvents`` when the
        execution is paused, or resumes and has not reached a wait since (it is delivered when
        the execution waits for it: :meth:`deliver_queued`); ``(None, None)`` otherwise.

        Raises:
            Conflict: the execution keeps :data:`MAX_QUEUED` events already, or keeps changing.
        """
        repository = self.engine.repository
        for _ in range(20):
            if record["status"] == WAITING and record.get("waitEvent") == name:
                return await self.resume_waiting(namespace, record, name, event=event, by=by), None
            if not keeps_events(record):
                return None, None
            queued = record.get("queuedEvents") or []
            if len(queued) >= MAX_QUEUED:
                raise Conflict(f"The execution keeps {MAX_QUEUED} events for its waits already")
            try:  # the engine hears of it from the feed, as of a change made elsewhere
                kept = await repository.transition(namespace, record, {"queuedEvents": [*queued, event]}, handled=False)
            except Conflict:  # it moved meanwhile: judge again
                fresh = await repository.get(namespace, record["id"])
                if fresh is None:
                    return None, None
                record = fresh
                continue
            return None, kept
        raise Conflict("The execution keeps changing: try again")

    async def deliver_queued(self, namespace: str, record: dict[str, Any]) -> None:
        """A waiting execution that keeps events for the one it waits for: the first of them that
        one of its transitions takes moves it; those before it, that none takes, are dropped (as
        they would have been, had they come while it waited)."""
        repository = self.engine.repository
        for _ in range(MAX_QUEUED + 20):
            if not has_queued_for_its_wait(record):
                return
            queued = record["queuedEvents"]
            index = next(i for i, e in enumerate(queued) if e.get("name") == record["waitEvent"])
            event, rest = queued[index], [*queued[:index], *queued[index + 1 :]]
            definition = await self.engine.definition(record["revision"])
            if _takes(definition.states[record["currentState"]], record, event["name"], event):
                moved = await self.resume_waiting(
                    namespace, record, event["name"], event=event, also={"queuedEvents": rest}
                )
                if moved is not None:
                    return
            else:
                with contextlib.suppress(Conflict, DoesNotExist):
                    record = await repository.transition(namespace, record, {"queuedEvents": rest})
                    self.engine.committed(namespace, record)
                    continue
            fresh = await repository.get(namespace, record["id"])
            if fresh is None:
                return
            record = fresh

    async def child_ended(self, namespace: str, child: dict[str, Any]) -> None:
        """A child execution (a ``choose`` state's) ended: its parent takes ``success`` or ``error``."""
        parent = await self.engine.repository.get(namespace, child["parent"])
        if parent is None or parent["status"] != WAITING or parent.get("child") != child["id"]:
            return
        on = "success" if child["status"] == SUCCESS else "error"
        await self.resume_waiting(namespace, parent, on, result=child.get("output"))


def _advance(
    definition: Definition, state: StateSpec, record: dict[str, Any], outcome: Outcome, started: float, now: float
) -> dict[str, Any]:
    """The changes of a state's run that ended with ``outcome``: wait, end, or move on."""
    changes = recorded(definition, state, record, outcome, started, now)
    if outcome.on == "wait":
        assert outcome.wait is not None
        deadline = outcome.waiting.get("deadline")
        return (
            changes
            | outcome.waiting
            | {
                "status": outcome.wait,
                "waiting": True,
                "nextRun": int(deadline * 1000) if deadline is not None else None,
            }
        )
    if outcome.on == "end":
        status = str(state.spec.get("status") or SUCCESS).upper()
        return changes | {
            "status": status,
            "output": outcome.result,
            "percentage": 100,
            "waiting": False,
            "ended": iso_ms(now),
            "message": "Finished" if status == SUCCESS else "Ended in error",
        }
    moved = transition(definition, state, record, outcome, changes.get("vars", record["vars"]), now)
    return taken(changes, moved, outcome.on, now)


def keeps_events(record: dict[str, Any]) -> bool:
    """Whether an event addressed to the execution is kept for its wait: it is paused, or it was
    resumed and has not reached a wait since (``resuming``)."""
    status = record.get("status")
    return status == PAUSED or (status in (RUNNING, QUEUED) and bool(record.get("resuming")))


def has_queued_for_its_wait(record: dict[str, Any]) -> bool:
    """Whether the execution waits for an event it keeps in ``queuedEvents``."""
    if record.get("status") != WAITING or not record.get("queuedEvents"):
        return False
    return any(event.get("name") == record.get("waitEvent") for event in record["queuedEvents"])


def _takes(state: StateSpec, record: dict[str, Any], on: str, event: dict[str, Any]) -> bool:
    """Whether one of ``state``'s transitions on the event ``on`` holds for ``event``. A condition
    that fails to evaluate counts as holding: taking the event makes it the state's error."""
    try:
        return next_state(state, on, context_of(record | {"event": event}, state.name)) is not None
    except ExpressionError:
        return True


def _command_changes(command: str, kind: int, status: str, record: dict[str, Any], now: str) -> dict[str, Any]:
    """The changes of a pause, resume or stop of an execution in ``status``.

    Raises:
        Conflict: the command does not fit the status.
    """
    stop = {"status": CANCELED, "waiting": False, "command": None, "ended": now, "message": "Stopped"}
    if command == "pause":
        if status == RUNNING:
            return {"command": "pause"}
        if status in WAITS or status == QUEUED:
            return {"status": PAUSED, "pausedFrom": status}
    elif command == "resume":
        if status == PAUSED:
            back = record.get("pausedFrom") or RUNNING
            changes = {"status": back, "pausedFrom": None}
            return changes | {"resuming": True} if back in (RUNNING, QUEUED) else changes
        if status == RUNNING and record.get("command") == "pause":
            return {"command": None}
    elif command == "stop":
        if status == RUNNING and kind == 0:
            return {"command": "stop"}
        if status not in FINAL:
            return stop
    raise Conflict(f"Cannot {command} an execution that is {status}")
