"""Flows that start on a schedule (``schedule`` and ``timezone`` of a definition).

Each process that runs the flows application keeps a timer for every enabled, running flow with
a schedule (:class:`~endpoints.flows.cron.CronObjects`); the process that claims a firing starts
the execution, as the flow's owner, with ``event`` ``{"name": "schedule", "at": ...}``. A firing
that cannot start it is told in the flow's status (:mod:`~endpoints.flows.health`).
"""

from __future__ import annotations

import logging
from typing import Any

from endpoints.flows import health
from endpoints.flows.cron import CronObjects
from endpoints.flows.definition import runnable
from endpoints.flows.engine import Engine
from endpoints.flows.model import FIRED, FLOWS
from endpoints.flows.schedule import Schedule
from flowbus import FlowBusError, iso

__all__ = ["FlowSchedules"]

logger = logging.getLogger("flowbus.flows")


class FlowSchedules(CronObjects):
    """Starts scheduled flows (background work of the flows application)."""

    name = "flow schedules"

    def __init__(self, engine: Engine) -> None:
        super().__init__(FLOWS, FIRED, engine.clock)
        self.engine = engine

    def schedule_of(self, flow: dict[str, Any]) -> Schedule | None:
        expression = flow.get("schedule")
        if not expression or flow.get("disabled") or flow.get("state", "running") != "running" or not runnable(flow):
            return None
        return Schedule(expression, flow.get("timezone") or "UTC")

    async def fire(self, namespace: str, flow: dict[str, Any], when: float) -> None:
        at = iso(when)
        event: dict[str, Any] = {"name": "schedule", "input": None, "tags": [], "at": at}
        store = self.services.store
        try:
            await self.engine.start_execution(namespace, flow, flow.get("owner") or "", None, event=event)
        except FlowBusError as exc:  # e.g. its input schema wants more than a schedule gives
            logger.warning("scheduled flow %r could not start: %s", flow.get("name"), exc.message)
            await health.failed(store, namespace, flow["id"], at, f"{exc.errorcode}: {exc.message}")
            return
        await health.started(store, namespace, flow["id"])
