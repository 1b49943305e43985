"""Auth changes made by another process sharing the store reach a running bus by its change feed.

Bus A runs in this process (its real websocket port, on a real SQLite file); bus B is a
``flowbus serve`` process on the same data directory. A's change feed is paused, B makes the
changes (a user added, a user disabled, a role emptied, a token revoked, an API key deleted),
and A answers as before: nothing of A's auth reads the store behind the feed's back. Then A's
feed publishes what the store's change log holds, once, and A answers with every change applied
as soon as that returns: no polling loop, no waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowbus.auth
from endpoints.inventory import create_app as create_inventory
from flowbus.bus import Bus
from flowbus.config import Settings
from flowbus.feed import ChangeFeed
from flowbus.node import build_bus
from tests.support import ADMIN_PASSWORD, Served, rpc, serve, ws_connect

DEVICE = "inventory/device"
AUTH_PACKAGE = str(Path(flowbus.auth.__file__).parent)


@pytest.fixture
async def bus_a(tmp_path: Path) -> AsyncIterator[Bus]:
    """Bus A: in this process, serving on free ports with its data in ``tmp_path/a``."""
    values = {"data": tmp_path / "a", "ws_port": 0, "http_port": 0, "admin_password": ADMIN_PASSWORD}
    bus, _ = build_bus(Settings.load(values, env={}), [create_inventory()], transports=("websocket",))
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@pytest.fixture
def bus_b(tmp_path: Path, bus_a: Bus) -> Iterator[Served]:
    """Bus B: a ``flowbus serve`` process on A's data directory."""
    served = serve(tmp_path / "b", "--data", str(tmp_path / "a"))
    try:
        yield served
    finally:
        served.stop()


async def call(url: str, token: str | None, method: str, endpoint: str = DEVICE, **fields: Any) -> dict[str, Any]:
    """One call on a fresh connection, with ``token`` in the envelope."""
    async with ws_connect(url) as ws:
        return await rpc(ws, {"method": method, "endpoint": endpoint, "token": token, **fields})


def data(answer: dict[str, Any]) -> Any:
    assert answer["success"] is True, answer
    return answer["data"]


def auth_tasks() -> list[asyncio.Task[Any]]:
    """The tasks running code of the auth package at their top."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "").startswith(AUTH_PACKAGE)
    ]


async def test_auth_changes_of_another_process_arrive_by_the_change_feed(bus_a: Bus, bus_b: Served) -> None:
    a = bus_a.url("websocket")

    async def login(username: str, password: str) -> dict[str, Any]:
        answer: dict[str, Any] = data(
            await call(a, None, "CREATE", "auth/token", data={"username": username, "password": password})
        )
        return answer

    admin = (await login("admin", ADMIN_PASSWORD))["token"]
    reader = {"id": "reader", "rules": [{"endpoints": "inventory/*", "methods": ["LIST"]}]}
    data(await call(a, admin, "CREATE", "auth/role", data=reader))
    for name, roles in (("erin", ["reader"]), ("gina", ["viewer"])):
        user = {"username": name, "password": "pw-12345678", "roles": roles}
        data(await call(a, admin, "CREATE", "auth/user", data=user))
    erin, gina = (await login("erin", "pw-12345678"))["token"], (await login("gina", "pw-12345678"))["token"]
    doomed = await login("admin", ADMIN_PASSWORD)
    key = data(await call(a, admin, "CREATE", "auth/apikey", data={"label": "doomed"}))
    assert auth_tasks() == []  # nothing of A's auth runs between calls: no loop rereads the store
    for token in (erin, gina, doomed["token"], key["key"]):
        data(await call(a, token, "LIST"))

    b = bus_b.ws_url
    feed = next(component for component in bus_a.components if isinstance(component, ChangeFeed))
    await feed.stop()

    data(await call(b, bus_b.token, "CREATE", "auth/user", data={"username": "frank", "password": "pw-12345678"}))
    data(await call(b, bus_b.token, "UPDATE", "auth/user", objectid="gina", data={"disabled": True}))
    data(await call(b, bus_b.token, "UPDATE", "auth/role", objectid="reader", data={"rules": []}))
    data(await call(b, bus_b.token, "DELETE", "auth/token", objectid=doomed["id"]))
    data(await call(b, bus_b.token, "DELETE", "auth/apikey", objectid=key["id"]))

    async def users_on_a() -> set[str]:
        return {user["id"] for user in data(await call(a, admin, "LIST", "auth/user"))}

    # Before A's feed publishes them, A knows nothing of these changes.
    assert "frank" not in await users_on_a()
    for token in (erin, gina, doomed["token"], key["key"]):
        data(await call(a, token, "LIST"))

    assert await feed.catch_up() > 0  # the changes B committed, published once on A's backplane

    assert "frank" in await users_on_a()
    assert data(await call(a, admin, "OPEN", "auth/user", objectid="gina"))["disabled"] is True
    assert (await call(a, erin, "LIST"))["errorcode"] == "PERMISSION_DENIED"
    for token in (gina, doomed["token"], key["key"]):
        assert (await call(a, token, "LIST"))["errorcode"] == "AUTH_FAILED"
