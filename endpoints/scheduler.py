"""The ``scheduler`` application: cron jobs that send an envelope, and the queue of executions.

``scheduler/job`` is a collection of jobs: a ``schedule`` (5-field cron, or the Quartz form with
seconds first), a ``timezone`` and an ``envelope`` (``endpoint``, ``method``, ``objectid``,
``data``, ``parameters``) that the job sends, when it fires, as its owner (the user who created
it) in its namespace, through the dispatcher like any call. Each firing is claimed by storing
a record named after the job and the time, so that of several processes sharing a store one
sends it. ``scheduler/queue`` lists the QUEUED and RUNNING flow executions, oldest first;
DELETE cancels one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from endpoints.flows.clock import Clock, SystemClock, Timer
from endpoints.flows.model import EXECUTIONS, QUEUED, RUNNING, no_text, progress_view
from endpoints.flows.schedule import Schedule
from flowbus import (
    Application,
    Call,
    Collection,
    Conflict,
    DoesNotExist,
    Endpoint,
    Event,
    FlowBusError,
    InvalidData,
    Page,
    Query,
    Services,
    every_object,
)

__all__ = ["JOB_SCHEMA", "create_app"]

logger = logging.getLogger("flowbus.scheduler")

JOBS = "scheduler/job"
FIRED = "scheduler/fired"
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schedule", "envelope"],
    "properties": {
        "name": {"type": "string", "maxLength": 256},
        "description": {"type": "string"},
        "schedule": {"type": "string"},
        "timezone": {"type": "string"},
        "disabled": {"type": "boolean"},
        "envelope": {
            "type": "object",
            "required": ["endpoint", "method"],
            "properties": {
                "endpoint": {"type": "string", "minLength": 1},
                "method": {"enum": ["LIST", "OPEN", "CREATE", "UPDATE", "DELETE", "INDEX", "RUN"]},
                "objectid": {"type": "string"},
                "parameters": {"type": "object"},
            },
        },
    },
}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class Jobs(Collection):
    """``scheduler/job``: cron jobs; the owner is the creator and cannot be given."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        super().__init__(
            JOBS, schema=JOB_SCHEMA, title="name", searchable=["name", "description"], description="Cron jobs"
        )

    def prepare(self, obj: dict[str, Any]) -> str:
        text = super().prepare(obj)
        try:
            Schedule(obj.get("schedule", ""), obj.get("timezone") or "UTC")
        except ValueError as exc:
            field = "timezone" if "time zone" in str(exc) else "schedule"
            raise InvalidData(str(exc), field=field) from None
        return text

    async def create(self, call: Call) -> Any:
        if isinstance(call.data, dict):
            call.data = {**call.data, "owner": call.identity.subject}
        job = await super().create(call)
        self.runner.armed(call.namespace, job)  # here at once; other processes by the change feed
        return job

    async def update(self, call: Call) -> Any:
        if isinstance(call.data, dict) and "owner" in call.data:
            raise InvalidData("'owner' is kept by the bus: the job's creator", field="owner")
        job = await super().update(call)
        self.runner.armed(call.namespace, job)
        return job


class Runner:
    """Fires the jobs (background work of the scheduler application)."""

    name = "scheduler"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._timers: dict[tuple[str, str], tuple[float, Timer]] = {}
        self._services: Services | None = None
        self._unsubscribe: Any = None
        self.fired: list[tuple[str, str]] = []

    async def start(self, services: Services) -> None:
        self._services = services
        self._unsubscribe = services.backplane.subscribe(every_object(JOBS), self._changed)
        for namespace in await self._namespaces():
            items, _ = await services.store.query(JOBS, namespace, Query(limit=1000, sort="created"))
            for job in items:
                self._arm(namespace, job)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def _namespaces(self) -> list[str]:
        assert self._services is not None
        found, _ = await self._services.store.query("flows/namespace", "", Query(limit=1000))
        return sorted({"", *(str(r.get("namespace", "")) for r in found)})

    def _changed(self, subject: str, event: Event) -> None:
        if not isinstance(event.data, dict) or event.seq is None:
            return
        if event.event == "DELETED":
            self._disarm((event.namespace, event.objectid))
        else:
            self._arm(event.namespace, event.data)

    def armed(self, namespace: str, job: dict[str, Any]) -> None:
        """Arm (or re-arm, or disarm) the timer of a job just written."""
        self._arm(namespace, job)

    def _disarm(self, key: tuple[str, str]) -> None:
        planned = self._timers.pop(key, None)
        if planned is not None:
            planned[1].cancel()

    def _arm(self, namespace: str, job: dict[str, Any]) -> None:
        key = (namespace, job["id"])
        if job.get("disabled"):
            self._disarm(key)
            return
        try:
            schedule = Schedule(job.get("schedule", ""), job.get("timezone") or "UTC")
        except ValueError:
            self._disarm(key)
            return
        when = schedule.next_after(datetime.fromtimestamp(self.clock.now(), UTC)).timestamp()
        planned = self._timers.get(key)
        if planned is not None and planned[0] == when:
            return
        self._disarm(key)
        self._timers[key] = (when, self.clock.at(when, lambda: self._due(namespace, job["id"], when)))

    def _due(self, namespace: str, objectid: str, when: float) -> None:
        self._timers.pop((namespace, objectid), None)
        asyncio.get_running_loop().create_task(self._fire(namespace, objectid, when))

    async def _fire(self, namespace: str, objectid: str, when: float) -> None:
        assert self._services is not None
        store = self._services.store
        job = await store.get(JOBS, namespace, objectid)
        if job is None:
            return
        self._arm(namespace, job)
        if job.get("disabled"):
            return
        try:
            await store.insert(FIRED, namespace, {"id": f"{objectid}@{int(when)}", "job": objectid}, no_text)
        except Conflict:
            return  # another process sent it
        outcome = await self._send(namespace, job)
        self.fired.append((namespace, objectid))
        await store.patch(JOBS, namespace, objectid, {"lastRun": _iso(when), **outcome}, no_text)

    async def _send(self, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
        assert self._services is not None
        envelope = job["envelope"]
        identity = self._services.identify(job.get("owner") or "")
        if identity is None:
            return {"lastError": f"the job's owner {job.get('owner')!r} no longer exists", "lastResult": None}
        try:
            result = await self._services.call(
                identity,
                envelope["method"],
                envelope["endpoint"],
                objectid=envelope.get("objectid"),
                namespace=namespace,
                data=envelope.get("data"),
                parameters=envelope.get("parameters"),
            )
        except FlowBusError as exc:
            return {"lastError": f"{exc.errorcode}: {exc.message}", "lastResult": None}
        return {"lastError": None, "lastResult": result}


class Queue(Endpoint):
    """``scheduler/queue``: QUEUED and RUNNING executions, oldest first; DELETE cancels one."""

    description = "Queued and running flow executions"

    def __init__(self) -> None:
        super().__init__("scheduler/queue")

    async def list(self, call: Call) -> Page:
        query = Query.from_parameters({k: v for k, v in call.parameters.items() if k in ("limit", "page", "offset")})
        found: list[dict[str, Any]] = []
        for status in (RUNNING, QUEUED):
            items, _ = await call.store.query(
                EXECUTIONS, call.namespace, Query(1000, 0, "created", False, {"status": status})
            )
            found.extend(items)
        found.sort(key=lambda r: (r["created"], r["id"]))
        page = found[query.offset : query.offset + query.limit]
        return Page([progress_view(r) for r in page], query.limit, query.offset, len(found))

    async def open(self, call: Call) -> Any:
        assert call.objectid is not None
        record = await call.store.get(EXECUTIONS, call.namespace, call.objectid)
        if record is None or record["status"] not in (QUEUED, RUNNING):
            raise DoesNotExist("No such queued or running execution")
        return progress_view(record)

    async def delete(self, call: Call) -> Any:
        assert call.objectid is not None
        await self.open(call)
        return await call.services.call(
            call.identity, "DELETE", EXECUTIONS, objectid=call.objectid, namespace=call.namespace
        )


def create_app(clock: Clock | None = None) -> Application:
    """Build the scheduler application (``clock``: the system clock unless a test gives one)."""
    app = Application("scheduler", description="Cron jobs and the queue of flow executions")
    runner = Runner(clock or SystemClock())
    app.add(Jobs(runner))
    app.add(Queue())
    app.run(runner)
    return app
