"""The bus: components start in order, stop in reverse, and a failed start stops what had started."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpoints import create_inventory
from flowbus.auth.base import AllowAll, Credentials, OpenAuthenticator
from flowbus.backplane import LocalBackplane
from flowbus.bus import Admission, Bus, Component, Endpoints, StoreComponent, Transports
from flowbus.dispatcher import Dispatcher
from flowbus.protocol import Method, Request
from flowbus.registry import Registry
from flowbus.store import SQLiteStore


class Recorder:
    """A component (or transport) that writes what happens to it in a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail = fail

    @property
    def url(self) -> str:
        return f"test://{self.name}"

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.journal.append(f"start {self.name}")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")


def _bus(tmp_path: Path, components: list[Recorder], transports: dict[str, Recorder] | None = None) -> Bus:
    store = SQLiteStore(tmp_path / "bus.db")
    backplane = LocalBackplane()
    registry = Registry([create_inventory()])
    registry.freeze()
    dispatcher = Dispatcher(registry, OpenAuthenticator(), AllowAll(), store=store, backplane=backplane)
    resources: list[Component] = [
        StoreComponent(store),
        *components,
        Endpoints(registry, dispatcher.services),
        Transports(transports or {}),
        Admission(dispatcher),
    ]
    return Bus(
        store=store,
        backplane=backplane,
        registry=registry,
        dispatcher=dispatcher,
        resources=resources,
        transports=transports,
    )


async def test_components_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    """Components start as given, transports after them; stopping runs the other way round."""
    journal: list[str] = []
    bus = _bus(tmp_path, [Recorder("feed", journal), Recorder("auth", journal)], {"ws": Recorder("ws", journal)})
    await bus.start()
    assert journal == ["start feed", "start auth", "start ws"]
    assert bus.url("ws") == "test://ws"
    await bus.stop()
    assert journal[3:] == ["stop ws", "stop auth", "stop feed"]
    assert bus.dispatcher.closing


async def test_a_failed_start_stops_what_had_started(tmp_path: Path) -> None:
    """If a later component fails, the earlier ones are stopped in reverse and the error raised."""
    journal: list[str] = []
    bus = _bus(tmp_path, [Recorder("feed", journal), Recorder("auth", journal, fail=True), Recorder("x", journal)])
    with pytest.raises(RuntimeError, match="auth cannot start"):
        await bus.start()
    assert journal == ["start feed", "stop feed"]


async def test_a_failed_transport_stops_the_started_transports_and_components(tmp_path: Path) -> None:
    """A transport that cannot start (a port in use) undoes the whole start."""
    journal: list[str] = []
    transports = {"ws": Recorder("ws", journal), "http": Recorder("http", journal, fail=True)}
    bus = _bus(tmp_path, [Recorder("auth", journal)], transports)
    with pytest.raises(RuntimeError, match="http cannot start"):
        await bus.start()
    assert journal == ["start auth", "start ws", "stop ws", "stop auth"]


async def test_a_bus_without_transports_serves_its_dispatcher(tmp_path: Path) -> None:
    """No transport is needed: the components run and calls reach endpoints through the dispatcher."""
    bus = _bus(tmp_path, [])
    await bus.start()
    try:
        request = Request(Method.CREATE, "inventory/device", data={"name": "sw"})
        answer = await bus.dispatcher.handle(request, Credentials())
        assert answer.success is True
        with pytest.raises(KeyError):
            bus.url("websocket")
    finally:
        await bus.stop()
