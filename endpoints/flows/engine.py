"""The flow engine: runs executions state by state, each transition a conditional write.

An execution is a record of ``flows/execution``. The engine moves it only by
``Store.patch(..., expect=version)``: the write that moves it from one state to the next names
the version it read, so that of two writers (two tasks, two processes sharing one store) exactly
one wins and the other reads again. No Python lock guards an execution.

Every transition is committed before the next state starts. A state's work runs between two
commits: after a crash, a RUNNING execution starts its current state again (a ``call`` in
flight at the crash is made again: at least once), or becomes INTERRUPTED when its flow says
``onCrash: interrupt``. Waits (WAITING, WAITING_UNTIL, USER_INPUT, SELECT_FLOW) hold no task:
an event, a timer or an answer moves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from endpoints.flows.clock import Clock, SystemClock, Timer
from endpoints.flows.cron import note_namespace
from endpoints.flows.definition import Definition, StateSpec, validate_definition
from endpoints.flows.expressions import ExpressionError
from endpoints.flows.model import (
    CANCELED,
    ERROR,
    EXECUTIONS,
    FINAL,
    INTERRUPTED,
    NAMESPACES,
    PAUSED,
    QUEUED,
    REVISIONS,
    RUNNING,
    SELECT_FLOW,
    SUCCESS,
    USER_INPUT,
    WAITING,
    WAITING_UNTIL,
    WAITS,
    no_text,
    progress_view,
)
from flowbus import (
    Conflict,
    DoesNotExist,
    Event,
    FlowBusError,
    Identity,
    InvalidData,
    PermissionDenied,
    Query,
    Schema,
    Services,
    every,
    every_object,
    new_objectid,
)

__all__ = ["Engine"]

logger = logging.getLogger("flowbus.flows")

HISTORY = 1000
"""The latest entries of ``stateContexts``, ``executionHistory`` and ``report`` an execution keeps."""
_OWN_LIMIT = 100_000  # commits made here whose feed events are still to come


def _iso(epoch: float) -> str:
    """RFC 3339 in UTC, to the millisecond (many per second: each second is formatted once)."""
    second, millisecond = divmod(int(epoch * 1000), 1000)
    return f"{_second(second)}.{millisecond:03d}Z"


@functools.lru_cache(maxsize=64)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


class _Outcome:
    """How a state's work ended: ``on`` is the transition's trigger (``success``, ``error``,
    ``timeout`` or an event name); ``wait`` a status to wait in instead."""

    __slots__ = ("attempts", "error", "input", "on", "result", "wait", "waiting")

    def __init__(self, on: str = "success", result: Any = None, error: str | None = None) -> None:
        self.on = on
        self.result = result
        self.error = error
        self.wait: str | None = None
        self.waiting: dict[str, Any] = {}
        self.attempts = 1
        self.input: Any = None


class Engine:
    """The background work of the ``flows`` application: runs, resumes and times executions.

    Args:
        concurrency: executions running at once in this process; the rest wait QUEUED, in order.
        clock: where time comes from (a :class:`~endpoints.flows.clock.ManualClock` in tests).
    """

    name = "flow engine"

    def __init__(self, concurrency: int = 64, clock: Clock | None = None) -> None:
        self.concurrency = concurrency
        self.clock: Clock = clock or SystemClock()
        self._services: Services | None = None
        self._definitions: dict[str, Definition] = {}
        self._schemas: dict[str, Schema | None] = {}
        self._namespaces: set[str] = set()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._timers: dict[tuple[str, str], tuple[float, Timer]] = {}
        self._settled: dict[tuple[str, str], list[asyncio.Future[dict[str, Any]]]] = {}
        self._watchers: dict[tuple[str, str], list[asyncio.Queue[dict[str, Any]]]] = {}
        # (namespace, id, version) of commits made here and handled at once (_after_commit): their
        # events from the change feed are passed over without decoding the record again.
        self._own: set[tuple[str, str, int]] = set()
        self._unsubscribe: list[Any] = []
        self._queue_wakeup = asyncio.Event()
        self._queue_task: asyncio.Task[None] | None = None
        self._running = 0
        self._stopping = False
        self._maybe_queued = True  # until a look at the store finds no QUEUED execution
        self._queue_marks = 0  # grows whenever an execution is queued (a look may have missed it)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the flow engine has not started")
        return self._services

    async def start(self, services: Services) -> None:
        """Follow executions' changes, then pick up what a previous run left (see :meth:`recover`)."""
        self._services = services
        self._stopping = False
        pattern = every_object(EXECUTIONS)
        self._unsubscribe.append(services.backplane.subscribe(pattern, self._changed))
        self._queue_task = asyncio.get_running_loop().create_task(self._dequeue())
        await self.recover()

    async def stop(self) -> None:
        """Stop running executions where they are: they stay RUNNING and resume on the next start."""
        self._stopping = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = [*self._tasks.values(), *([self._queue_task] if self._queue_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def recover(self) -> None:
        """Resume RUNNING executions (or interrupt them), re-arm the timers of waiting ones, queue
        QUEUED ones, and move parents whose child ended meanwhile."""
        for namespace in await self._known_namespaces():
            for status in (RUNNING, WAITING, WAITING_UNTIL, USER_INPUT, SELECT_FLOW, PAUSED):
                for record in await self._all(namespace, {"status": status}):
                    await self._recover_one(namespace, record)
        self._queue_wakeup.set()

    async def _recover_one(self, namespace: str, record: dict[str, Any]) -> None:
        status = record["status"]
        if status == RUNNING:
            definition = await self.definition(record["revision"])
            if definition.data.get("onCrash") == "interrupt":
                await self._finish_interrupted(namespace, record)
            elif (namespace, record["id"]) not in self._tasks:
                self._spawn(namespace, record)
            return
        if record.get("deadline") is not None:
            self._arm(namespace, record)
        child = record.get("child")
        if status == WAITING and child:
            found = await self.services.store.get(EXECUTIONS, namespace, child)
            if found is not None and found["status"] in FINAL:
                await self._child_ended(namespace, found)

    async def _finish_interrupted(self, namespace: str, record: dict[str, Any]) -> None:
        changes = {
            "status": INTERRUPTED,
            "waiting": False,
            "message": "Interrupted: the bus stopped while it ran",
            "ended": _iso(self.clock.now()),
        }
        with contextlib.suppress(Conflict, DoesNotExist):
            await self._write(namespace, record, changes)

    # -- definitions -------------------------------------------------------------------------

    async def revision_of(self, namespace: str, flow: dict[str, Any]) -> str:
        """The id of the snapshot of ``flow`` as it is now, stored once per flow version."""
        revision = f"{flow['id']}@{flow['version']}"
        if revision not in self._definitions:
            snapshot = {k: v for k, v in flow.items() if k not in ("created", "updated", "version")}
            snapshot["id"] = revision
            with contextlib.suppress(Conflict):  # another process stored the same snapshot
                await self.services.store.insert(REVISIONS, "", snapshot, no_text)
            self._definitions[revision] = validate_definition(_definition_data(flow))
        return revision

    async def definition(self, revision: str) -> Definition:
        """The definition an execution runs (its flow as it was when the execution started)."""
        found = self._definitions.get(revision)
        if found is None:
            stored = await self.services.store.get(REVISIONS, "", revision)
            if stored is None:
                raise DoesNotExist(f"The definition {revision!r} is gone")
            found = self._definitions[revision] = validate_definition(_definition_data(stored))
        return found

    def input_schema(self, revision: str, definition: Definition) -> Schema | None:
        if revision not in self._schemas:
            schema = definition.data.get("input")
            self._schemas[revision] = Schema(schema) if isinstance(schema, dict) else None
        return self._schemas[revision]

    # -- starting ----------------------------------------------------------------------------

    async def start_execution(
        self,
        namespace: str,
        flow: dict[str, Any],
        owner: str,
        data: Any,
        *,
        start_state: str | None = None,
        tags: Iterable[str] = (),
        event: dict[str, Any] | None = None,
        parent: str | None = None,
        objectid: str | None = None,
    ) -> dict[str, Any]:
        """Start an execution of ``flow`` acting as ``owner``; answers its record as committed.

        Raises:
            InvalidData: ``data`` does not satisfy the flow's ``input`` schema.
            InvalidRequest: ``start_state`` is not a state of the flow.
        """
        revision = await self.revision_of(namespace, flow)
        definition = await self.definition(revision)
        schema = self.input_schema(revision, definition)
        if schema is not None:
            schema.validate(data if data is not None else {})
        start = start_state or definition.start
        if start not in definition.states:
            raise InvalidData(f"'startState': the flow has no state {start!r}", field="startState")
        record = self._new_record(flow, revision, definition, start, owner, data, tags, event, parent)
        if objectid is not None:
            record["id"] = objectid
        await self._note_namespace(namespace)
        take = self._running < self.concurrency and not self._stopping
        record["status"] = RUNNING if take else QUEUED
        if take:
            self._running += 1  # the slot is held from now: a burst of starts cannot overshoot
        try:
            stored = await self.services.store.insert(EXECUTIONS, namespace, record, no_text)
        except BaseException:
            if take:
                self._running -= 1
            raise
        self._note_own(namespace, stored)  # what its CREATED event would make happen is done here
        if take:
            self._spawn(namespace, stored, held=True)
        else:
            self._queued()
        return stored

    def _new_record(
        self,
        flow: dict[str, Any],
        revision: str,
        definition: Definition,
        start: str,
        owner: str,
        data: Any,
        tags: Iterable[str],
        event: dict[str, Any] | None,
        parent: str | None,
    ) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "id": new_objectid(),
            "flow": {"id": flow["id"], "name": flow.get("name")},
            "flowId": flow["id"],
            "flowName": flow.get("name"),
            "revision": revision,
            "currentState": start,
            "startState": start,
            "waiting": False,
            "nextRun": None,
            "deadline": None,
            "percentage": 0,
            "message": _message_of(definition.states[start], {}),
            "input": data,
            "output": None,
            "vars": {},
            "event": event,
            "tags": list(dict.fromkeys(tags)),
            "stateContexts": [],
            "executionHistory": [_history(definition, flow.get("name"), start)],
            "report": [],
            "owner": owner,
            "parent": parent,
            "child": None,
            "error": None,
            "started": _iso(now),
            "ended": None,
        }

    # -- running -----------------------------------------------------------------------------

    def _spawn(self, namespace: str, record: dict[str, Any], *, held: bool = False) -> None:
        key = (namespace, record["id"])
        if key in self._tasks:
            if held:
                self._running -= 1
            return
        if not held:
            self._running += 1
        task = asyncio.get_running_loop().create_task(self._run(namespace, record))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._ended(key))

    def _ended(self, key: tuple[str, str]) -> None:
        self._tasks.pop(key, None)
        self._running -= 1
        if self._maybe_queued:  # a look at the store costs a scan: only when something may wait
            self._queue_wakeup.set()

    def _queued(self) -> None:
        """An execution is QUEUED (here or in another process): look for room to start it."""
        self._maybe_queued = True
        self._queue_marks += 1
        self._queue_wakeup.set()

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
                failed = _failed(f"internal error: {type(exc).__name__}", self.clock.now())
                with contextlib.suppress(Exception):
                    self._after_commit(namespace, await self._write(namespace, last, failed))

    async def _step(self, namespace: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """Run the current state and commit where it leads; None once the execution is not ours."""
        command = record.get("command")
        if command:
            return await self._obey(namespace, record, command)
        definition = await self.definition(record["revision"])
        state = definition.states[record["currentState"]]
        started = self.clock.now()
        outcome = await self._attempts(namespace, record, definition, state)
        changes = self._advance(definition, state, record, outcome, started)
        return await self._commit(namespace, record, changes)

    async def _obey(self, namespace: str, record: dict[str, Any], command: str) -> dict[str, Any] | None:
        if command == "pause":
            changes: dict[str, Any] = {"status": PAUSED, "pausedFrom": RUNNING, "command": None}
        else:
            changes = {"status": CANCELED, "command": None, "waiting": False, "ended": _iso(self.clock.now())}
        return await self._commit(namespace, record, changes)

    async def _commit(self, namespace: str, record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any] | None:
        """Write a step's changes on the version read; when another writer came between (a tag, a
        command), read again and write once more if the execution still stands where it stood."""
        while True:
            try:
                stored = await self._write(namespace, record, changes)
            except Conflict:
                fresh = await self.services.store.get(EXECUTIONS, namespace, record["id"])
                if fresh is None or not _same_place(fresh, record):
                    return None  # stopped, paused from outside, or moved by another runner
                record = fresh  # only tags or a command changed: the step's changes still hold
                continue
            self._after_commit(namespace, stored)
            return stored

    async def _write(self, namespace: str, record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        return await self.services.store.patch(
            EXECUTIONS, namespace, record["id"], changes, no_text, expect=record["version"], base=record
        )

    def _note_own(self, namespace: str, record: dict[str, Any]) -> None:
        """A commit made here and acted on at once: its event from the change feed is passed over."""
        if len(self._own) >= _OWN_LIMIT:  # events that never came (a trimmed log): forget them
            self._own.clear()
        self._own.add((namespace, record["id"], record["version"]))

    def _after_commit(self, namespace: str, record: dict[str, Any]) -> None:
        key = (namespace, record["id"])
        self._note_own(namespace, record)
        progress = Event("PROGRESS", EXECUTIONS, record["id"], namespace, progress_view(record))
        self.services.backplane.publish(progress.subject, progress)  # for subscribers; not stored
        for queue in self._watchers.get(key, ()):
            queue.put_nowait(record)
        if record.get("deadline") is not None and record["status"] in WAITS:
            self._arm(namespace, record)
        if record["status"] not in (RUNNING, QUEUED):
            self._settle(key, record)
        if record["status"] in FINAL and record.get("parent"):
            asyncio.get_running_loop().create_task(self._child_ended(namespace, record))

    # -- one state's work --------------------------------------------------------------------

    async def _attempts(
        self, namespace: str, record: dict[str, Any], definition: Definition, state: StateSpec
    ) -> _Outcome:
        """The state's work, tried again as its ``retry`` says; the last failure if all fail."""
        retry = state.retry
        tries = 1 if definition.data.get("skipRetries") else retry.max + 1
        delay = retry.delay
        outcome = _Outcome()
        for attempt in range(1, tries + 1):
            outcome = await self._attempt(namespace, record, state)
            outcome.attempts = attempt
            if outcome.on != "error" or attempt == tries:
                break
            await self.clock.sleep(delay)
            delay *= retry.backoff
        if outcome.on == "error" and state.proceed_on_failure:
            outcome.on = "success"  # the error stays recorded in the state's context
        return outcome

    async def _attempt(self, namespace: str, record: dict[str, Any], state: StateSpec) -> _Outcome:
        context = _context(record, state.name)
        try:
            if state.timeout is not None and state.action not in ("wait", "input", "choose"):
                async with asyncio.timeout(state.timeout):
                    return await self._act(namespace, record, state, context)
            return await self._act(namespace, record, state, context)
        except TimeoutError:
            return _Outcome("timeout", error=f"state {state.name!r} took longer than {state.timeout} s")
        except ExpressionError as exc:
            return _Outcome("error", error=str(exc))
        except FlowBusError as exc:
            return _Outcome("error", error=f"{exc.errorcode}: {exc.message}")
        except Exception as exc:  # a registered callable's own failure
            logger.info("state %r failed: %r", state.name, exc)
            return _Outcome("error", error=f"{type(exc).__name__}: {exc}")

    async def _act(self, namespace: str, record: dict[str, Any], state: StateSpec, context: dict[str, Any]) -> _Outcome:
        action = state.action
        values = {name: value.evaluate(context) for name, value in state.values.items()}
        if action == "call":
            return await self._call(namespace, record, values)
        if action == "set":
            outcome = _Outcome(result=values.get("vars") or {})
            outcome.input = values.get("vars")
            return outcome
        if action == "log":
            level = logging.getLevelName(str(state.spec.get("level", "info")).upper())
            logger.log(
                level if isinstance(level, int) else logging.INFO,
                "flow %s: %s",
                record["flowName"],
                values.get("message"),
            )
            return _Outcome(result=values.get("message"))
        if action == "invoke":
            return await self._invoke(str(state.spec["name"]), values.get("args"))
        if action == "end":
            return _Outcome("end", result=values.get("output"))
        return self._wait(state, values)

    async def _call(self, namespace: str, record: dict[str, Any], values: dict[str, Any]) -> _Outcome:
        identity = self._identity(record)
        result = await self.services.call(
            identity,
            str(values.get("method")),
            str(values.get("endpoint")),
            objectid=_text_or_none(values.get("objectid")),
            namespace=str(values.get("namespace") or namespace),
            data=values.get("data"),
            parameters=values.get("parameters") or {},
        )
        outcome = _Outcome(result=result)
        outcome.input = {
            k: values.get(k) for k in ("endpoint", "method", "objectid", "data") if values.get(k) is not None
        }
        return outcome

    def _identity(self, record: dict[str, Any]) -> Identity:
        identity = self.services.identify(record.get("owner") or "")
        if identity is None:
            raise PermissionDenied(f"The execution's user {record.get('owner')!r} no longer exists")
        return identity

    async def _invoke(self, name: str, args: Any) -> _Outcome:
        function = self.services.functions.get(name)
        if function is None:
            return _Outcome("error", error=f"No function named {name!r} is registered")
        result = function(args)
        if inspect.isawaitable(result):
            result = await result
        return _Outcome(result=result)

    def _wait(self, state: StateSpec, values: dict[str, Any]) -> _Outcome:
        """A state that waits: for an event, a time, an answer or a choice."""
        outcome = _Outcome("wait")
        now = self.clock.now()
        deadline = now + state.timeout if state.timeout is not None else None
        if state.action == "wait" and "event" in state.spec:
            outcome.wait = WAITING
            outcome.waiting = {"waitEvent": values.get("event", state.spec["event"])}
        elif state.action == "wait":
            outcome.wait = WAITING_UNTIL
            deadline = _until(values, now)
        elif state.action == "input":
            outcome.wait = USER_INPUT
            outcome.waiting = {"schema": state.spec.get("schema")}
        else:
            outcome.wait = SELECT_FLOW
            outcome.waiting = {"choices": list(state.spec.get("flows") or [])}
        outcome.waiting["deadline"] = deadline
        return outcome

    # -- where a state leads -----------------------------------------------------------------

    def _advance(
        self, definition: Definition, state: StateSpec, record: dict[str, Any], outcome: _Outcome, started: float
    ) -> dict[str, Any]:
        now = self.clock.now()
        changes = _recorded(definition, state, record, outcome, started, now)
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
                "ended": _iso(now),
                "message": "Finished" if status == SUCCESS else "Ended in error",
            }
        moved = self._transition(definition, state, record, outcome, changes.get("vars", record["vars"]))
        return _taken(changes, moved, outcome.on, now)

    def _transition(
        self, definition: Definition, state: StateSpec, record: dict[str, Any], outcome: _Outcome, vars_: dict[str, Any]
    ) -> dict[str, Any]:
        context = _context(record | {"vars": vars_}, state.name)
        try:
            target = _next_state(state, outcome.on, context)
        except ExpressionError as exc:
            return _failed(str(exc), self.clock.now())
        if target is None:
            reason = outcome.error or f"state {state.name!r} has no transition on {outcome.on!r}"
            return _failed(reason, self.clock.now())
        return _entered(definition, record, target, context, self.clock.now())

    # -- events, answers, timers -------------------------------------------------------------

    async def resume_waiting(
        self,
        namespace: str,
        record: dict[str, Any],
        on: str,
        *,
        event: dict[str, Any] | None = None,
        result: Any = None,
    ) -> dict[str, Any] | None:
        """Move a waiting execution on ``on`` (an event name, ``success``, ``timeout``); None when
        another writer moved it first (it is no longer waiting at the version read)."""
        definition = await self.definition(record["revision"])
        state = definition.states[record["currentState"]]
        outcome = _Outcome(on, result=result)
        base = dict(record)
        if event is not None:
            base["event"] = event
        started = self.clock.now()
        changes = _recorded(definition, state, base, outcome, started, started)
        vars_ = changes.get("vars", record["vars"])
        moved = self._transition(definition, state, base, outcome, vars_)
        changes = _taken(changes, moved, on, started)
        changes |= {"waiting": False, "waitEvent": None, "deadline": None, "nextRun": None}
        changes |= {"schema": None, "choices": None, "child": None}
        if event is not None:
            changes["event"] = event
        if changes.get("status") == RUNNING and self._running >= self.concurrency:
            changes["status"] = QUEUED
        try:
            stored = await self._write(namespace, record, changes)
        except (Conflict, DoesNotExist):
            return None
        self._after_commit(namespace, stored)
        if stored["status"] == RUNNING:
            self._spawn(namespace, stored)
        elif stored["status"] == QUEUED:
            self._queued()
        return stored

    def _arm(self, namespace: str, record: dict[str, Any]) -> None:
        key = (namespace, record["id"])
        deadline = record.get("deadline")
        planned = self._timers.get(key)
        if deadline is None or (planned is not None and planned[0] == deadline):
            return
        if planned is not None:
            planned[1].cancel()
        timer = self.clock.at(deadline, lambda: self._due(key, deadline))
        self._timers[key] = (deadline, timer)

    def _due(self, key: tuple[str, str], deadline: float) -> None:
        if self._timers.get(key, (None,))[0] == deadline:
            del self._timers[key]
        if not self._stopping:
            asyncio.get_running_loop().create_task(self._fire(*key))

    async def _fire(self, namespace: str, objectid: str) -> None:
        record = await self.services.store.get(EXECUTIONS, namespace, objectid)
        if record is None or record["status"] not in WAITS or record.get("deadline") is None:
            return
        if record["deadline"] > self.clock.now():  # moved to a later time meanwhile
            self._arm(namespace, record)
            return
        on = "success" if record["status"] == WAITING_UNTIL else "timeout"
        await self.resume_waiting(namespace, record, on)

    async def _child_ended(self, namespace: str, child: dict[str, Any]) -> None:
        parent = await self.services.store.get(EXECUTIONS, namespace, child["parent"])
        if parent is None or parent["status"] != WAITING or parent.get("child") != child["id"]:
            return
        on = "success" if child["status"] == SUCCESS else "error"
        await self.resume_waiting(namespace, parent, on, result=child.get("output"))

    # -- commands ----------------------------------------------------------------------------

    async def command(self, namespace: str, record: dict[str, Any], command: str, kind: int = 0) -> dict[str, Any]:
        """Pause, resume or stop an execution (``kind`` 0: after its current state, 1: now).

        Raises:
            Conflict: the command does not fit the execution's status (nothing is changed), or
                another writer changed it meanwhile.
        """
        for _ in range(20):
            changes = _command_changes(command, kind, record["status"], record, _iso(self.clock.now()))
            try:
                stored = await self._write(namespace, record, changes)
                break
            except Conflict:  # the runner committed a step meanwhile: judge the command again
                fresh = await self.services.store.get(EXECUTIONS, namespace, record["id"])
                if fresh is None:
                    raise DoesNotExist() from None
                record = fresh
        else:
            raise Conflict("The execution keeps changing: try again")
        self._after_commit(namespace, stored)
        key = (namespace, stored["id"])
        if stored["status"] in FINAL and key in self._tasks:
            self._tasks[key].cancel()  # a hard stop: the state's work is abandoned
        if stored["status"] == RUNNING:
            self._spawn(namespace, stored)
        elif stored["status"] == QUEUED:
            self._queued()
        if stored["status"] in WAITS and stored.get("deadline") is not None:
            self._arm(namespace, stored)
        return stored

    # -- waiting for an execution ------------------------------------------------------------

    async def settled(self, namespace: str, objectid: str, known: dict[str, Any] | None = None) -> dict[str, Any]:
        """The execution once it is neither RUNNING nor QUEUED (it ended, or it waits).

        ``known``: its record as the caller just got it from a commit (:meth:`start_execution`),
        with nothing awaited since: it is not read again.
        """
        key = (namespace, objectid)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._settled.setdefault(key, []).append(future)
        try:
            record = known if known is not None else await self.services.store.get(EXECUTIONS, namespace, objectid)
            if record is None:
                raise DoesNotExist()
            if record["status"] not in (RUNNING, QUEUED):
                return record
            return await future  # the record as committed when it settled
        finally:
            self._drop(self._settled, key, future)

    @contextlib.contextmanager
    def watch(self, namespace: str, objectid: str) -> Any:
        """A queue that receives the execution's record after each of its commits."""
        key = (namespace, objectid)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._watchers.setdefault(key, []).append(queue)
        try:
            yield queue
        finally:
            self._drop(self._watchers, key, queue)

    @staticmethod
    def _drop(table: dict[Any, list[Any]], key: Any, item: Any) -> None:
        items = table.get(key)
        if items is not None:
            with contextlib.suppress(ValueError):
                items.remove(item)
            if not items:
                del table[key]

    def _settle(self, key: tuple[str, str], record: dict[str, Any]) -> None:
        for future in self._settled.pop(key, ()):
            if not future.done():
                future.set_result(record)

    def _changed(self, subject: str, event: Event) -> None:
        """A change of an execution, made here or by another process sharing the store."""
        if event.version is not None and self._own:
            own = (event.namespace, event.objectid, event.version)
            if own in self._own:  # committed here: _after_commit has done what follows
                self._own.discard(own)
                return
        record = event.data
        if not isinstance(record, dict) or event.seq is None:
            return
        key = (event.namespace, event.objectid)
        status = record.get("status")
        if status not in (RUNNING, QUEUED):
            self._settle(key, record)
        if status in FINAL and key in self._tasks and event.event != "CREATED":
            task = self._tasks[key]
            if record.get("version", 0) > 0 and status == CANCELED:
                task.cancel()
        if status in WAITS and record.get("deadline") is not None and not self._stopping:
            self._arm(event.namespace, record)
        if status == QUEUED:
            self._queued()

    # -- the queue ---------------------------------------------------------------------------

    async def _dequeue(self) -> None:
        """Start QUEUED executions, oldest first, while there is room."""
        while True:
            await self._queue_wakeup.wait()
            self._queue_wakeup.clear()
            try:
                await self._start_queued()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("starting queued flow executions failed")

    async def _start_queued(self) -> None:
        found, marks = False, self._queue_marks
        for namespace in sorted(self._namespaces):
            while self._running < self.concurrency:
                query = Query(limit=self.concurrency, sort="created", filters={"status": QUEUED})
                items, _ = await self.services.store.query(EXECUTIONS, namespace, query)
                if not items:
                    break
                found = True
                for record in items:
                    if self._running >= self.concurrency:
                        return
                    await self._take(namespace, record)
            else:
                found = True  # no room to look further: some may still wait
        if not found and marks == self._queue_marks:
            self._maybe_queued = False

    async def _take(self, namespace: str, record: dict[str, Any]) -> None:
        try:
            stored = await self._write(namespace, record, {"status": RUNNING})
        except (Conflict, DoesNotExist):
            return  # another process took it
        self._spawn(namespace, stored)

    # -- store helpers -----------------------------------------------------------------------

    async def namespaces(self) -> list[str]:
        """The namespaces that hold flows or executions."""
        return await self._known_namespaces()

    async def note_namespace(self, namespace: str) -> None:
        """Remember that ``namespace`` holds flows or executions (for recovery and schedules)."""
        await self._note_namespace(namespace)

    async def _note_namespace(self, namespace: str) -> None:
        if namespace not in self._namespaces:
            await note_namespace(self.services.store, namespace)
            self._namespaces.add(namespace)

    async def _known_namespaces(self) -> list[str]:
        records = await self._all("", {}, collection=NAMESPACES)
        self._namespaces.update(str(r.get("namespace", "")) for r in records)
        return sorted(self._namespaces)

    async def _all(
        self, namespace: str, filters: dict[str, Any], *, collection: str = EXECUTIONS
    ) -> list[dict[str, Any]]:
        return await every(self.services.store, collection, namespace, filters, sort="created")

    async def find(self, namespace: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Every execution of ``namespace`` matching ``filters`` (exact values), oldest first."""
        return await self._all(namespace, filters)


# -- pure helpers ------------------------------------------------------------------------------


def _definition_data(flow: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flow.items() if k not in ("id", "created", "updated", "version", "owner", "state")}


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _context(record: dict[str, Any], state: str) -> dict[str, Any]:
    return {
        "input": record.get("input"),
        "vars": record.get("vars") or {},
        "state": {"name": state},
        "event": record.get("event"),
        "execution": {
            "id": record.get("id"),
            "flowName": record.get("flowName"),
            "tags": record.get("tags") or [],
            "status": record.get("status"),
        },
    }


def _message_of(state: StateSpec, context: dict[str, Any]) -> str:
    if state.message is None:
        return f"Running {state.name}"
    try:
        value = state.message.evaluate(context)
    except ExpressionError:
        return f"Running {state.name}"
    return str(value)


def _history(definition: Definition, flow_name: Any, state: str) -> dict[str, Any]:
    return {"flowName": flow_name, "stateName": state, "stateIndex": definition.order.index(state)}


def _next_state(state: StateSpec, on: str, context: dict[str, Any]) -> str | None:
    for transition in state.transitions:
        if transition.on != on:
            continue
        if transition.condition is None or transition.condition.evaluate(context):
            return transition.to
    return None


def _recorded(
    definition: Definition, state: StateSpec, record: dict[str, Any], outcome: _Outcome, started: float, now: float
) -> dict[str, Any]:
    """What a state's run adds to the record: its context, its report line, its result's variable."""
    changes: dict[str, Any] = {}
    result_name = state.spec.get("result")
    vars_ = record.get("vars") or {}
    if state.action == "set" and outcome.on == "success" and isinstance(outcome.result, dict):
        changes["vars"] = vars_ | outcome.result
    elif result_name and outcome.on != "error" and outcome.on != "wait":
        changes["vars"] = vars_ | {result_name: outcome.result}
    if outcome.on == "wait":
        return changes | {"message": _message_of(state, _context(record, state.name))}
    context = {
        "name": state.name,
        "input": outcome.input,
        "output": outcome.result if outcome.on != "error" else None,
        "transitionContexts": [],
        "attempts": outcome.attempts,
        "started": _iso(started),
        "ended": _iso(now),
        "error": outcome.error,
    }
    line = {
        "state": state.name,
        "action": state.action,
        "started": _iso(started),
        "ms": round((now - started) * 1000, 3),
        "result": "error" if outcome.error else outcome.on,
    }
    changes["stateContexts"] = [*record.get("stateContexts", [])[-HISTORY + 1 :], context]
    changes["report"] = [*record.get("report", [])[-HISTORY + 1 :], line]
    return changes


def _entered(
    definition: Definition, record: dict[str, Any], target: str, context: dict[str, Any], now: float
) -> dict[str, Any]:
    """The changes that move an execution into state ``target``."""
    states = definition.states
    history = [
        *record.get("executionHistory", [])[-HISTORY + 1 :],
        _history(definition, record.get("flowName"), target),
    ]
    visited = {entry["stateName"] for entry in history}
    percentage = min(99, round(100 * len(visited) / max(1, len(states))))
    changes: dict[str, Any] = {
        "status": RUNNING,
        "currentState": target,
        "executionHistory": history,
        "percentage": percentage,
        "message": _message_of(states[target], context),
    }
    return changes


def _taken(changes: dict[str, Any], moved: dict[str, Any], on: str, now: float) -> dict[str, Any]:
    """A state's changes and where it led; the transition taken goes in the state's context."""
    contexts = changes.get("stateContexts")
    target = moved.get("currentState")
    if contexts and target is not None:
        contexts[-1]["transitionContexts"] = [{"on": on, "to": target, "at": _iso(now)}]
    return changes | moved


def _failed(reason: str, now: float) -> dict[str, Any]:
    return {
        "status": ERROR,
        "error": reason,
        "waiting": False,
        "ended": _iso(now),
        "message": reason,
        "percentage": 100,
    }


def _same_place(fresh: dict[str, Any], record: dict[str, Any]) -> bool:
    return (
        fresh["status"] == record["status"]
        and fresh.get("currentState") == record.get("currentState")
        and len(fresh.get("executionHistory") or []) == len(record.get("executionHistory") or [])
    )


def _until(values: dict[str, Any], now: float) -> float:
    if values.get("seconds") is not None:
        seconds = values["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise InvalidData(f"'seconds' must be a number of seconds, not {seconds!r}")
        return now + float(seconds)
    until = values.get("until")
    try:
        moment = datetime.fromisoformat(str(until).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidData(f"'until' must be an ISO 8601 time, not {until!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _command_changes(command: str, kind: int, status: str, record: dict[str, Any], now: str) -> dict[str, Any]:
    stop = {"status": CANCELED, "waiting": False, "command": None, "ended": now, "message": "Stopped"}
    if command == "pause":
        if status == RUNNING:
            return {"command": "pause"}
        if status in WAITS or status == QUEUED:
            return {"status": PAUSED, "pausedFrom": status}
    elif command == "resume":
        if status == PAUSED:
            return {"status": record.get("pausedFrom") or RUNNING, "pausedFrom": None}
        if status == RUNNING and record.get("command") == "pause":
            return {"command": None}
    elif command == "stop":
        if status == RUNNING and kind == 0:
            return {"command": "stop"}
        if status not in FINAL:
            return stop
    raise Conflict(f"Cannot {command} an execution that is {status}")
