"""``scheduler/queue``: the QUEUED and RUNNING executions, oldest first, read through
``flows/execution`` as the caller; and the LIST of ``flows/execution`` it reads them with
(several statuses, oldest first, the short form)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, settle
from tests.endpoints.flows.test_executions import gated
from tests.flowbus.helpers import fails, ok, unique
from tests.support import rpc

QUEUE = "scheduler/queue"
PROGRESS = {"id", "contextId", "status", "percentage", "message", "flow", "currentState"}


@pytest.fixture
async def held(clocked: Clocked, cws: ClientConnection) -> AsyncIterator[list[dict[str, Any]]]:
    """Seven executions held at a gate, in the order they started: 4 RUNNING (the bus's bound),
    3 QUEUED. The gate opens when the test ends."""
    gate = unique("gate")
    flow = await ok(cws, "CREATE", FLOW, data=gated(unique("held"), gate))
    started = [await ok(cws, "RUN", FLOW, objectid=flow["id"]) for _ in range(7)]
    assert [s["status"] for s in started] == ["RUNNING"] * 4 + ["QUEUED"] * 3
    for _ in range(2000):  # a hang guard: the four RUNNING ones reach the gate
        if clocked.gates.calls.get(gate, 0) == 4:
            break
        await asyncio.sleep(0.01)
    yield started
    clocked.gates.gate(gate).set()
    for execution in started:
        await settle(cws, execution["id"])


async def page(ws: ClientConnection, endpoint: str, **parameters: Any) -> tuple[list[str], dict[str, Any]]:
    """The ids a LIST answers, and its ``page``."""
    answer = await rpc(ws, {"method": "LIST", "endpoint": endpoint, "parameters": parameters})
    assert answer["success"] is True, answer
    return [item["id"] for item in answer["data"]], answer["page"]


async def test_the_queue_pages_oldest_first_with_its_total(cws: ClientConnection, held: list[dict[str, Any]]) -> None:
    ids = [s["id"] for s in held]
    assert await page(cws, QUEUE, limit=3) == (ids[:3], {"limit": 3, "offset": 0, "total": 7})
    assert await page(cws, QUEUE, limit=3, page=1) == (ids[3:6], {"limit": 3, "offset": 3, "total": 7})
    assert await page(cws, QUEUE, limit=3, offset=6) == (ids[6:], {"limit": 3, "offset": 6, "total": 7})
    assert await page(cws, QUEUE, limit=3, offset=9) == ([], {"limit": 3, "offset": 9, "total": 7})
    assert await page(cws, QUEUE, limit=7) == (ids, {"limit": 7, "offset": 0, "total": 7})
    assert await page(cws, QUEUE) == (ids, {"limit": 30, "offset": 0, "total": 7})
    items = await ok(cws, "LIST", QUEUE)
    assert [set(item) for item in items] == [PROGRESS] * 7
    assert [item["status"] for item in items] == ["RUNNING"] * 4 + ["QUEUED"] * 3


async def test_open_and_delete_answer_only_queued_or_running_executions(
    cws: ClientConnection, held: list[dict[str, Any]]
) -> None:
    opened = await ok(cws, "OPEN", QUEUE, objectid=held[6]["id"])
    assert (set(opened), opened["status"]) == (PROGRESS, "QUEUED")
    canceled = await ok(cws, "DELETE", QUEUE, objectid=held[6]["id"])
    assert canceled["status"] == "CANCELED"
    for objectid in (held[6]["id"], "no-such-execution"):
        answer = await fails(cws, "DO_NOT_EXIST", "OPEN", QUEUE, objectid=objectid)
        assert answer["message"] == "No such queued or running execution"
        await fails(cws, "DO_NOT_EXIST", "DELETE", QUEUE, objectid=objectid)
    assert (await page(cws, QUEUE))[1]["total"] == 6


async def login(clocked: Clocked, cws: ClientConnection, rules: list[dict[str, Any]]) -> str:
    """A new user whose one role has ``rules``; answers its token."""
    name = unique("user")
    await ok(cws, "CREATE", "auth/role", data={"id": name, "rules": rules})
    password = f"{name}-password"
    await ok(cws, "CREATE", "auth/user", data={"username": name, "password": password, "roles": [name]})
    async with clocked.connect() as anonymous:
        answer = await rpc(
            anonymous,
            {"method": "CREATE", "endpoint": "auth/token", "data": {"username": name, "password": password}},
        )
    token: str = answer["data"]["token"]
    return token


async def test_the_queue_reads_executions_as_the_caller(
    clocked: Clocked, cws: ClientConnection, held: list[dict[str, Any]]
) -> None:
    """The executions are read through ``flows/execution``: a caller who may use the queue but
    not list executions is refused, as by ``flows/execution`` itself."""
    queue_only = await login(clocked, cws, [{"endpoints": "scheduler/*", "methods": ["LIST", "OPEN", "DELETE"]}])
    both = await login(
        clocked,
        cws,
        [
            {"endpoints": "scheduler/*", "methods": ["LIST", "OPEN"]},
            {"endpoints": "flows/execution", "methods": ["LIST", "OPEN"]},
        ],
    )
    async with clocked.connect(queue_only) as ws:
        await fails(ws, "PERMISSION_DENIED", "LIST", QUEUE)
        await fails(ws, "PERMISSION_DENIED", "OPEN", QUEUE, objectid=held[0]["id"])
        await fails(ws, "PERMISSION_DENIED", "DELETE", QUEUE, objectid=held[0]["id"])
    async with clocked.connect(both) as ws:
        assert (await page(ws, QUEUE, limit=2))[1] == {"limit": 2, "offset": 0, "total": 7}
        assert (await ok(ws, "OPEN", QUEUE, objectid=held[0]["id"]))["status"] == "RUNNING"
        await fails(ws, "PERMISSION_DENIED", "DELETE", QUEUE, objectid=held[0]["id"])


async def test_executions_list_several_statuses_oldest_first_in_short(
    cws: ClientConnection, held: list[dict[str, Any]]
) -> None:
    ids = [s["id"] for s in held]
    newest = await page(cws, EXECUTION, status=["RUNNING", "QUEUED"], limit=2, offset=1)
    assert newest == ([ids[5], ids[4]], {"limit": 2, "offset": 1, "total": 7})
    oldest = await page(cws, EXECUTION, status="QUEUED,RUNNING", sort="created", limit=5, offset=2)
    assert oldest == (ids[2:7], {"limit": 5, "offset": 2, "total": 7})
    assert (await page(cws, EXECUTION, status="QUEUED", sort="created"))[0] == ids[4:]
    assert (await page(cws, EXECUTION, status="QUEUED"))[0] == ids[4:][::-1]
    short = await ok(cws, "LIST", EXECUTION, parameters={"status": ["QUEUED"], "view": "progress"})
    assert [set(item) for item in short] == [PROGRESS] * 3
    full = await ok(cws, "LIST", EXECUTION, parameters={"status": "QUEUED"})
    assert {"input", "vars", "stateContexts"} <= set(full[0])
    for bad in ("NOPE", "RUNNING,NOPE", ["RUNNING", 3], "", []):
        answer = await fails(cws, "INVALID_REQUEST", "LIST", EXECUTION, parameters={"status": bad})
        assert answer["message"].startswith("'status' must be one of QUEUED, RUNNING")


async def test_executions_list_several_statuses_with_tags(cws: ClientConnection, held: list[dict[str, Any]]) -> None:
    tagged = [held[1]["id"], held[5]["id"]]
    for objectid in tagged:
        await ok(cws, "UPDATE", EXECUTION, objectid=objectid, data={"addTags": ["picked"]})
    parameters = {"status": ["QUEUED", "RUNNING"], "tag": "picked"}
    assert await page(cws, EXECUTION, **parameters) == (tagged[::-1], {"limit": 30, "offset": 0, "total": 2})
    assert (await page(cws, EXECUTION, **parameters, sort="created"))[0] == tagged
