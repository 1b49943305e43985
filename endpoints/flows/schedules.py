"""Flows that start on a schedule (``schedule`` and ``timezone`` of a definition).

Each process that runs the flows application arms a timer for every enabled flow with a
schedule, and follows the definitions' changes. When a timer fires, the process claims the
firing by storing a record named after the flow and the time (``flows/fired``): of several
processes sharing a store, the one whose insert lands starts the execution, as the flow's owner.
A firing missed while no process ran is not made up for: the next one is armed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from endpoints.flows.clock import Timer
from endpoints.flows.engine import Engine
from endpoints.flows.model import FIRED, FLOWS, no_text
from endpoints.flows.schedule import Schedule
from flowbus import Conflict, Event, FlowBusError, Query, Services, every_object

__all__ = ["FlowSchedules"]

logger = logging.getLogger("flowbus.flows")


class FlowSchedules:
    """Starts scheduled flows (background work of the flows application)."""

    name = "flow schedules"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._timers: dict[tuple[str, str], tuple[float, Timer]] = {}
        self._unsubscribe: Any = None
        self._services: Services | None = None

    async def start(self, services: Services) -> None:
        self._services = services
        self._unsubscribe = services.backplane.subscribe(every_object(FLOWS), self._changed)
        for namespace in await self.engine.namespaces():
            items, _ = await services.store.query(FLOWS, namespace, Query(limit=1000, sort="created"))
            for flow in items:
                self._arm(namespace, flow)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _changed(self, subject: str, event: Event) -> None:
        if isinstance(event.data, dict) and event.seq is not None:
            if event.event == "DELETED":
                self._disarm((event.namespace, event.objectid))
            else:
                self._arm(event.namespace, event.data)

    def armed(self, namespace: str, flow: dict[str, Any]) -> None:
        """Arm (or re-arm, or disarm) the timer of a flow just written here."""
        self._arm(namespace, flow)

    def disarmed(self, namespace: str, flow_id: str) -> None:
        """Forget the timer of a flow just deleted here."""
        self._disarm((namespace, flow_id))

    def _disarm(self, key: tuple[str, str]) -> None:
        planned = self._timers.pop(key, None)
        if planned is not None:
            planned[1].cancel()

    def _arm(self, namespace: str, flow: dict[str, Any]) -> None:
        key = (namespace, flow["id"])
        expression = flow.get("schedule")
        if not expression or flow.get("disabled") or flow.get("state", "running") != "running":
            self._disarm(key)
            return
        try:
            schedule = Schedule(expression, flow.get("timezone") or "UTC")
        except ValueError:
            self._disarm(key)
            return
        now = datetime.fromtimestamp(self.engine.clock.now(), UTC)
        when = schedule.next_after(now).timestamp()
        planned = self._timers.get(key)
        if planned is not None and planned[0] == when:
            return
        self._disarm(key)
        timer = self.engine.clock.at(when, lambda: self._due(namespace, flow["id"], when))
        self._timers[key] = (when, timer)

    def _due(self, namespace: str, flow_id: str, when: float) -> None:
        self._timers.pop((namespace, flow_id), None)
        asyncio.get_running_loop().create_task(self._fire(namespace, flow_id, when))

    async def _fire(self, namespace: str, flow_id: str, when: float) -> None:
        assert self._services is not None
        store = self._services.store
        flow = await store.get(FLOWS, namespace, flow_id)
        if flow is None:
            return
        self._arm(namespace, flow)  # the next firing
        if flow.get("disabled") or flow.get("state", "running") != "running" or not flow.get("schedule"):
            return
        at = datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
        try:
            await store.insert(FIRED, namespace, {"id": f"{flow_id}@{int(when)}", "flow": flow_id, "at": at}, no_text)
        except Conflict:
            return  # another process fired it
        event: dict[str, Any] = {"name": "schedule", "input": None, "tags": [], "at": at}
        with contextlib.suppress(FlowBusError):
            await self.engine.start_execution(namespace, flow, flow.get("owner") or "", None, event=event)
            return
        logger.warning("scheduled flow %r could not start", flow.get("name"))
