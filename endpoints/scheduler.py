"""The ``scheduler`` application: cron jobs that send an envelope, and the queue of executions.

``scheduler/job`` is a collection of jobs: a ``schedule`` (5-field cron, or the Quartz form with
seconds first), a ``timezone`` and an ``envelope`` (``endpoint``, ``method``, ``objectid``,
``data``, ``parameters``) that the job sends, when it fires, as its owner (the user who created
it) in its namespace, through the dispatcher like any call. Each firing is claimed by storing
a record named after the job and the time, so that of several processes sharing a store one
sends it. ``scheduler/queue`` lists the QUEUED and RUNNING flow executions, oldest first;
DELETE cancels one. It reads them through the ``flows/execution`` endpoint, as the caller:
the flows application's authorization applies, as to a client's call.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from endpoints.flows import Clock, CronObjects, Schedule, SystemClock
from flowbus import (
    Application,
    Call,
    Collection,
    DoesNotExist,
    Endpoint,
    FlowBusError,
    InvalidData,
    Page,
    Query,
    iso,
)

__all__ = ["JOB_SCHEMA", "create_app"]

logger = logging.getLogger("flowbus.scheduler")

JOBS = "scheduler/job"
FIRED = "scheduler/fired"
EXECUTIONS = "flows/execution"
ACTIVE = ("RUNNING", "QUEUED")
"""The statuses of the executions in the queue."""
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


def _no_text(obj: dict[str, Any]) -> str:
    """The search text of a job patched by its firing: none."""
    return ""


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
            Schedule(obj.get("schedule", ""), obj.get("timezone") or "UTC").check_bound(datetime.now(UTC))
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


class Runner(CronObjects):
    """Fires the jobs (background work of the scheduler application)."""

    name = "scheduler"

    def __init__(self, clock: Clock) -> None:
        super().__init__(JOBS, FIRED, clock)

    def schedule_of(self, job: dict[str, Any]) -> Schedule | None:
        if job.get("disabled"):
            return None
        return Schedule(job.get("schedule", ""), job.get("timezone") or "UTC")

    async def fire(self, namespace: str, job: dict[str, Any], when: float) -> None:
        outcome = await self._send(namespace, job)
        await self.services.store.patch(JOBS, namespace, job["id"], {"lastRun": iso(when), **outcome}, _no_text)

    async def _send(self, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
        envelope = job["envelope"]
        identity = self.services.identify(job.get("owner") or "")
        if identity is None:
            return {"lastError": f"the job's owner {job.get('owner')!r} no longer exists", "lastResult": None}
        try:
            result = await self.services.call(
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
    """``scheduler/queue``: QUEUED and RUNNING executions, oldest first; DELETE cancels one.

    Every read is a call to ``flows/execution`` as the caller: a page of it, with its total.
    """

    description = "Queued and running flow executions"

    def __init__(self) -> None:
        super().__init__("scheduler/queue")

    async def list(self, call: Call) -> Page:
        query = Query.from_parameters({k: v for k, v in call.parameters.items() if k in ("limit", "page", "offset")})
        parameters = {"status": list(ACTIVE), "sort": "created", "limit": query.limit, "offset": query.offset}
        page = await call.services.call(
            call.identity,
            "LIST",
            EXECUTIONS,
            namespace=call.namespace,
            parameters={**parameters, "view": "progress"},
            whole=True,
        )
        assert isinstance(page, Page)  # a LIST answers a page
        return page

    async def open(self, call: Call) -> Any:
        assert call.objectid is not None
        try:
            found = await call.services.call(
                call.identity,
                "OPEN",
                EXECUTIONS,
                objectid=call.objectid,
                namespace=call.namespace,
                parameters={"view": "progress"},
            )
        except DoesNotExist:
            found = None
        if not isinstance(found, dict) or found.get("status") not in ACTIVE:
            raise DoesNotExist("No such queued or running execution")
        return found

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
