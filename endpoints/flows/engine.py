"""The flow engine: the background work of the ``flows`` application, and what its endpoints ask
of it (start an execution, wait for it, follow it).

The engine is made of parts, each in its module:

- :mod:`~endpoints.flows.repository`: every read and write of executions, each move a write
  conditional on the version read (of two writers, exactly one wins; no Python lock guards an
  execution), and which feed events tell of the engine's own commits;
- :mod:`~endpoints.flows.runner`: the tasks that run executions' states, the moves of waiting
  executions and the commands (:mod:`~endpoints.flows.actions` does one state's work,
  :mod:`~endpoints.flows.steps` says what it changes in the record);
- :mod:`~endpoints.flows.queue`: the bound on executions running at once, and the QUEUED ones;
- :mod:`~endpoints.flows.timers`: deadlines of waits and retries' delays;
- :mod:`~endpoints.flows.recovery`: what a previous run left unfinished.

Here: their lifecycle, the definitions executions run (revisions), and what follows a commit,
made here (:meth:`Engine.committed`) or by another process (the change feed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from endpoints.flows.clock import Clock, SystemClock
from endpoints.flows.contexts import ContextIds
from endpoints.flows.definition import Definition, not_runnable, runnable, validate_definition
from endpoints.flows.model import ACTIVE, CANCELED, EXECUTIONS, FINAL, QUEUED, RUNNING, WAITS, progress_view
from endpoints.flows.queue import Queue
from endpoints.flows.recovery import Recovery
from endpoints.flows.repository import Repository
from endpoints.flows.runner import Runner, has_queued_for_its_wait
from endpoints.flows.steps import definition_data, new_record
from endpoints.flows.timers import Timers
from flowbus import Conflict, DoesNotExist, Event, InvalidData, Schema, Services, every_object

__all__ = ["Engine"]

Key = tuple[str, str]


class Engine:
    """The background work of the ``flows`` application: runs, resumes and times executions.

    Args:
        concurrency: executions running at once in this process; the rest wait QUEUED, in order.
        clock: where time comes from (a :class:`~endpoints.flows.clock.ManualClock` in tests).
    """

    name = "flow engine"

    def __init__(self, concurrency: int = 64, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.stopping = False
        self.repository = Repository()
        self.context_ids = ContextIds()
        self.queue = Queue(self, concurrency)
        self.runner = Runner(self)
        self.timers = Timers(self)
        self._services: Services | None = None
        self._definitions: dict[str, Definition] = {}
        self._schemas: dict[str, Schema | None] = {}
        self._settled: dict[Key, list[tuple[bool, asyncio.Future[dict[str, Any]]]]] = {}
        self._watchers: dict[Key, list[asyncio.Queue[dict[str, Any]]]] = {}
        self._unsubscribe: list[Any] = []

    @property
    def concurrency(self) -> int:
        return self.queue.concurrency

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the flow engine has not started")
        return self._services

    async def start(self, services: Services) -> None:
        """Follow executions' changes, then pick up what a previous run left (see :mod:`~endpoints.flows.recovery`)."""
        self._services = services
        self.stopping = False
        self.repository.open(services.store, self._follow)
        self.context_ids.open(services.store)
        self._unsubscribe.append(services.backplane.subscribe(every_object(EXECUTIONS), self._changed))
        self.queue.start()
        await Recovery(self).recover()

    async def stop(self) -> None:
        """Stop running executions where they are: they stay RUNNING and resume on the next start."""
        self.stopping = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self.timers.stop()
        await self.runner.stop(self.queue.stop())
        self.repository.close()

    # -- definitions -------------------------------------------------------------------------

    async def revision_of(self, flow: dict[str, Any]) -> str:
        """The id of the snapshot of ``flow`` as it is now, stored once per flow version."""
        revision = f"{flow['id']}@{flow['version']}"
        if revision not in self._definitions:
            snapshot = {k: v for k, v in flow.items() if k not in ("created", "updated", "version")}
            snapshot["id"] = revision
            await self.repository.save_revision(snapshot)
            self._definitions[revision] = validate_definition(definition_data(flow), bounded=False)
        return revision

    async def definition(self, revision: str) -> Definition:
        """The definition an execution runs (its flow as it was when the execution started)."""
        found = self._definitions.get(revision)
        if found is None:
            stored = await self.repository.revision(revision)
            if stored is None:
                raise DoesNotExist(f"The definition {revision!r} is gone")
            found = self._definitions[revision] = validate_definition(definition_data(stored), bounded=False)
        return found

    def input_schema(self, revision: str, definition: Definition) -> Schema | None:
        if revision not in self._schemas:
            schema = definition.data.get("input")
            self._schemas[revision] = Schema(schema) if isinstance(schema, dict) else None
        return self._schemas[revision]

    # -- what the endpoints ask --------------------------------------------------------------

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
            Conflict: the flow is disabled, stopped or paused.
            InvalidData: ``data`` does not satisfy the flow's ``input`` schema, or
                ``start_state`` is not a state of the flow.
            Conflict: the flow has no states (its exports and imports run nothing here).
        """
        revision, definition, start = await self.check_start(flow, data, start_state)
        now = self.clock.now()
        record = new_record(flow, revision, definition, start, owner, data, tags, event, parent, now)
        if objectid is not None:
            record["id"] = objectid
        record = {"id": record["id"], "contextId": await self.context_ids.take(), **record}
        self.repository.noted(namespace)
        take = self.queue.take_slot()
        record["status"] = RUNNING if take else QUEUED
        try:
            stored = await self.repository.insert(namespace, record)
        except BaseException:
            if take:
                self.queue.release(freed=False)
            raise
        if take:
            self.runner.spawn(namespace, stored, held=True)
        else:
            self.queue.queued()
        return stored

    async def check_start(
        self, flow: dict[str, Any], data: Any, start_state: str | None = None
    ) -> tuple[str, Definition, str]:
        """What :meth:`start_execution` checks before it writes anything: answers the revision,
        the definition and the start state an execution of ``flow`` with input ``data`` gets.

        Raises:
            Conflict: the flow has no states, or is disabled, stopped or paused: it starts nothing.
            InvalidData: as :meth:`start_execution`.
        """
        if not runnable(flow):  # a flow of exports and imports alone: nothing to run here
            raise not_runnable(flow)
        if flow.get("disabled"):
            raise Conflict(f"The flow {flow['name']!r} is disabled")
        if flow.get("state", "running") != "running":
            raise Conflict(f"The flow {flow['name']!r} is {flow.get('state')}: start or resume it first")
        revision = await self.revision_of(flow)
        definition = await self.definition(revision)
        schema = self.input_schema(revision, definition)
        if schema is not None:
            schema.validate(data if data is not None else {})
        start = start_state or definition.start
        if start not in definition.states:
            raise InvalidData(f"'startState': the flow has no state {start!r}", field="startState")
        return revision, definition, start

    # -- waiting for an execution ------------------------------------------------------------

    async def settled(
        self, namespace: str, objectid: str, known: dict[str, Any] | None = None, *, ended: bool = False
    ) -> dict[str, Any]:
        """The execution once it is neither RUNNING nor QUEUED (it ended, or it waits); with
        ``ended``, once it has ended (waits are waited through).

        ``known``: its record as the caller just got it from a commit (:meth:`start_execution`),
        with nothing awaited since: it is not read again.
        """
        key = (namespace, objectid)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (ended, future)
        self._settled.setdefault(key, []).append(entry)
        try:
            record = known if known is not None else await self.repository.get(namespace, objectid)
            if record is None:
                raise DoesNotExist()
            if record["status"] in FINAL or (not ended and record["status"] not in ACTIVE):
                return record
            return await future  # the record as committed when it settled
        finally:
            _drop(self._settled, key, entry)

    async def ended(self, namespace: str, objectid: str) -> dict[str, Any]:
        """The execution once it has ended, for a state of another execution that waits for it
        (a ``call`` that RUNs a flow with ``wait``). That state's slot is lent back meanwhile, as
        a waiting execution holds none. Should the wait be given up (the state's timeout, a hard
        stop), the execution is stopped, unless the engine is stopping: it then goes on, and the
        state that waited runs again on the next start."""
        self.queue.release()
        try:
            return await self.settled(namespace, objectid, ended=True)
        except asyncio.CancelledError:
            if not self.stopping:
                await self.abandon(namespace, objectid)
            raise
        finally:
            self.queue.occupy()

    async def abandon(self, namespace: str, objectid: str) -> None:
        """Stop an execution now (a hard stop) that nobody waits for any more, unless it has ended."""
        record = await self.repository.get(namespace, objectid)
        if record is not None and record["status"] not in FINAL:
            with contextlib.suppress(Conflict, DoesNotExist):
                await self.runner.command(namespace, record, "stop", 1)

    @contextlib.contextmanager
    def watch(self, namespace: str, objectid: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives the execution's record after each of its commits made here."""
        key = (namespace, objectid)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._watchers.setdefault(key, []).append(queue)
        try:
            yield queue
        finally:
            _drop(self._watchers, key, queue)

    def _settle(self, key: Key, record: dict[str, Any]) -> None:
        ended = record.get("status") in FINAL
        for wants_end, future in self._settled.get(key, ()):
            if (ended or not wants_end) and not future.done():
                future.set_result(record)

    # -- after a commit ----------------------------------------------------------------------

    def committed(self, namespace: str, record: dict[str, Any]) -> None:
        """What follows a commit made here, done at once (its feed event is then passed over)."""
        key = (namespace, record["id"])
        progress = Event("PROGRESS", EXECUTIONS, record["id"], namespace, progress_view(record))
        self.services.backplane.publish(progress.subject, progress)  # for subscribers; not stored
        for queue in self._watchers.get(key, ()):
            queue.put_nowait(record)
        if record.get("deadline") is not None and record["status"] in WAITS:
            self.timers.arm(namespace, record)
        if record["status"] not in ACTIVE:
            self._settle(key, record)
        if record["status"] in FINAL and record.get("parent"):
            asyncio.get_running_loop().create_task(self.runner.child_ended(namespace, record))
        if has_queued_for_its_wait(record):
            asyncio.get_running_loop().create_task(self.runner.deliver_queued(namespace, record))

    def _changed(self, subject: str, event: Event) -> None:
        """A change of an execution, made here or by another process sharing the store."""
        if event.seq is None or self.repository.own(event):
            return  # not a stored change, or one committed here: committed() has done what follows
        self._follow(event)

    def _follow(self, event: Event) -> None:
        """Act on a stored change of an execution that was not committed here."""
        record = event.data
        if not isinstance(record, dict):
            return
        key = (event.namespace, event.objectid)
        status = record.get("status")
        if status not in ACTIVE:
            self._settle(key, record)
        if status == CANCELED and event.event != "CREATED" and record.get("version", 0) > 0:
            self.runner.cancel(key)  # stopped hard elsewhere: its state's work here is abandoned
        self.timers.committed(event.namespace, record)
        if status == QUEUED:
            self.queue.queued()
        if has_queued_for_its_wait(record) and not self.stopping:
            asyncio.get_running_loop().create_task(self.runner.deliver_queued(event.namespace, record))


def _drop(table: dict[Any, list[Any]], key: Any, item: Any) -> None:
    items = table.get(key)
    if items is not None:
        with contextlib.suppress(ValueError):
            items.remove(item)
        if not items:
            del table[key]
