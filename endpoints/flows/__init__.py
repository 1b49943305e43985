"""The ``flows`` application: durable workflows hosted on the bus.

Definitions (``flows/flow``), executions (``flows/execution``), events (``flows/event``), flow
commands (``flows/command``) and status (``flows/status``); the :class:`Engine` runs
executions in the background. See docs/FLOWS.md.

This module is the application's public face: other applications import only what it exports
(the clock, cron schedules and the timers of scheduled objects), never its modules, and reach
its executions through its endpoints, as a client does (``services.call``).
"""

from __future__ import annotations

from endpoints.flows.api import Commands, Events, Executions, FlowDefinitions, FlowStatus
from endpoints.flows.clock import Clock, ManualClock, SystemClock
from endpoints.flows.cron import CronObjects
from endpoints.flows.engine import Engine
from endpoints.flows.schedule import Schedule
from endpoints.flows.schedules import FlowSchedules
from flowbus import Application

__all__ = [
    "Clock",
    "CronObjects",
    "Engine",
    "ManualClock",
    "Schedule",
    "SystemClock",
    "create_app",
]


def create_app(concurrency: int = 64, clock: Clock | None = None) -> Application:
    """Build the flows application.

    Args:
        concurrency: executions running at once in this process (``FLOWBUS_FLOW_CONCURRENCY``).
        clock: where the engine's time comes from; the system clock unless a test gives one.
    """
    engine = Engine(concurrency, clock)
    schedules = FlowSchedules(engine)
    app = Application("flows", description="Durable workflows: definitions, executions, events")
    app.add(FlowDefinitions(engine, schedules))
    app.add(Executions(engine))
    app.add(Events(engine))
    app.add(Commands(engine, schedules))
    app.add(FlowStatus(engine))
    app.run(engine)
    app.run(schedules)
    return app
