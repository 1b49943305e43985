"""An in-process bus whose flow engine and scheduler run on a clock the test moves.

The bus is the real one (websocket server and gateway on ephemeral ports, a SQLite file in a
temporary directory, authentication on); only its time is the test's: ``clocked.clock.advance(60)``
makes a minute pass for timers and schedules, so no test sleeps for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from endpoints import create_inventory
from endpoints.flows import Engine, ManualClock, create_app as create_flows
from endpoints.scheduler import create_app as create_scheduler
from flowbus import Application, Call, Endpoint
from flowbus.bus import Bus
from flowbus.config import Settings
from flowbus.errors import Unavailable
from flowbus.node import build_bus
from tests.support import rpc, ws_connect

PASSWORD = "flow-tests-password"
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@dataclass
class Gates:
    """``testflows/gate`` RUN with objectid X waits until the test opens gate X; calls are counted."""

    opened: dict[str, asyncio.Event] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    entered: dict[str, asyncio.Event] = field(default_factory=dict)

    def gate(self, name: str) -> asyncio.Event:
        return self.opened.setdefault(name, asyncio.Event())

    def arrived(self, name: str) -> asyncio.Event:
        return self.entered.setdefault(name, asyncio.Event())


def testing_app(gates: Gates) -> Application:
    """Endpoints and a function for flows to use in tests."""
    app = Application("testflows")

    @app.endpoint("testflows/gate")
    class Gate(Endpoint):
        async def run(self, call: Call) -> Any:
            name = call.objectid or ""
            gates.calls[name] = gates.calls.get(name, 0) + 1
            gates.arrived(name).set()
            await gates.gate(name).wait()
            return {"gate": name, "data": call.data}

    @app.endpoint("testflows/flaky")
    class Flaky(Endpoint):
        async def run(self, call: Call) -> Any:
            name = call.objectid or ""
            gates.calls[name] = gates.calls.get(name, 0) + 1
            data = call.data if isinstance(call.data, dict) else {}
            failures = int(data.get("failures", 0))
            if gates.calls[name] <= failures:
                raise Unavailable(f"failure {gates.calls[name]}")
            return {"tries": gates.calls[name]}

    @app.function("double")
    def double(args: Any) -> Any:
        return {"value": args["value"] * 2}

    @app.function("explode")
    async def explode(args: Any) -> Any:
        raise ValueError("it exploded")

    return app


@dataclass
class Clocked:
    bus: Bus
    clock: ManualClock
    gates: Gates
    token: str
    engine: Engine

    def connect(self, token: str | None = None) -> Any:
        return ws_connect(self.bus.url("websocket"), token=token or self.token)

    @property
    def http(self) -> str:
        return self.bus.url("http")


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[Clocked]:
    clock = ManualClock(START)
    gates = Gates()
    flags = {"data": tmp_path, "ws_port": 0, "http_port": 0, "admin_password": PASSWORD}
    settings = Settings.load(flags, env={})
    flows = create_flows(4, clock)
    engine = next(work for work in flows.background if isinstance(work, Engine))
    apps = [create_inventory(), flows, create_scheduler(clock), testing_app(gates)]
    bus, _ = build_bus(settings, apps)
    await bus.start()
    try:
        async with ws_connect(bus.url("websocket")) as ws:
            answer = await rpc(
                ws, {"method": "CREATE", "endpoint": "auth/token", "data": {"username": "admin", "password": PASSWORD}}
            )
        yield Clocked(bus, clock, gates, answer["data"]["token"], engine)
    finally:
        for event in gates.opened.values():
            event.set()
        await bus.stop()


@pytest.fixture
async def cws(clocked: Clocked) -> AsyncIterator[ClientConnection]:
    """A websocket connection to the clocked bus, as admin."""
    async with clocked.connect() as ws:
        yield ws
