"""LIST flows/execution: every parameter it takes means something; any other answers
INVALID_REQUEST naming it, rather than a list that silently ignores it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, approval, settle
from tests.flowbus.helpers import fails, ok, unique
from tests.support import rpc


async def started(ws: ClientConnection, namespace: str, count: int) -> list[dict[str, Any]]:
    """``count`` executions of the approval flow in ``namespace``, each waiting for its event."""
    flow = await ok(ws, "CREATE", FLOW, data=approval("listed"), namespace=namespace)
    records = []
    for _ in range(count):
        execution = await ok(ws, "RUN", FLOW, objectid=flow["id"], data={"name": "l"}, namespace=namespace)
        records.append(await settle(ws, execution["id"], namespace))
    return records


async def listed(ws: ClientConnection, namespace: str, **parameters: Any) -> list[str]:
    found = await ok(ws, "LIST", EXECUTION, parameters=parameters, namespace=namespace)
    return [e["id"] for e in found]


async def test_unknown_filters_are_refused_by_name(cws: ClientConnection) -> None:
    namespace = unique("ns")
    await started(cws, namespace, 1)
    answer = await fails(
        cws, "INVALID_REQUEST", "LIST", EXECUTION, parameters={"startedAfter": "2030-01-01"}, namespace=namespace
    )
    assert "startedAfter" in answer["message"]
    answer = await fails(
        cws, "INVALID_REQUEST", "LIST", EXECUTION, parameters={"colour": "red", "size": 2}, namespace=namespace
    )
    assert "colour" in answer["message"] and "size" in answer["message"]
    answer = await fails(cws, "INVALID_REQUEST", "LIST", EXECUTION, parameters={"view": "full"}, namespace=namespace)
    assert "view" in answer["message"]
    for view in ("context", "progress"):
        await ok(cws, "LIST", EXECUTION, parameters={"view": view}, namespace=namespace)


async def test_sort_is_created_either_way_and_nothing_else(cws: ClientConnection) -> None:
    namespace = unique("ns")
    ids = [r["id"] for r in await started(cws, namespace, 3)]
    assert await listed(cws, namespace) == ids[::-1]
    assert await listed(cws, namespace, sort="-created") == ids[::-1]
    assert await listed(cws, namespace, sort="created") == ids
    assert await listed(cws, namespace, sort="+created") == ids
    answer = await fails(cws, "INVALID_REQUEST", "LIST", EXECUTION, parameters={"sort": "name"}, namespace=namespace)
    assert "sort" in answer["message"]


async def test_created_after_and_before(cws: ClientConnection) -> None:
    namespace = unique("ns")
    records = await started(cws, namespace, 2)
    ids = sorted(r["id"] for r in records)
    created = datetime.fromisoformat(records[0]["created"])
    second = timedelta(seconds=1)

    async def between(**bounds: Any) -> list[str]:
        return sorted(await listed(cws, namespace, **bounds))

    assert await between(createdAfter="2030-01-01") == []
    assert await between(createdBefore="2030-01-01") == ids
    assert await between(createdAfter="2020-01-01T00:00:00Z", createdBefore="2030-01-01T00:00:00+02:00") == ids
    # bounds are strict: an execution created at the bound itself is not after (nor before) it
    first = records[0]["created"]
    assert records[0]["id"] not in await between(createdAfter=first)
    assert records[0]["id"] not in await between(createdBefore=first)
    assert records[0]["id"] in await between(createdAfter=(created - second).isoformat())
    assert records[0]["id"] in await between(createdBefore=(created + second).isoformat())
    for bad in ("soon", "2030-13-01", 17):
        answer = await fails(
            cws, "INVALID_REQUEST", "LIST", EXECUTION, parameters={"createdAfter": bad}, namespace=namespace
        )
        assert "createdAfter" in answer["message"]
    # with the other filters, paging and the short form
    assert await between(createdAfter="2020-01-01", status="WAITING,RUNNING", tag=[]) == ids
    progress = await ok(
        cws,
        "LIST",
        EXECUTION,
        parameters={"createdBefore": "2030-01-01", "view": "progress", "limit": 1, "sort": "created"},
        namespace=namespace,
    )
    assert [p["id"] for p in progress] == [records[0]["id"]] and "stateContexts" not in progress[0]


async def test_owner(clocked: Clocked, cws: ClientConnection) -> None:
    namespace = unique("ns")
    mine = [r["id"] for r in await started(cws, namespace, 2)]
    role = {"id": unique("lister"), "rules": [{"endpoints": "flows/*", "methods": ["LIST", "OPEN", "RUN"]}]}
    await ok(cws, "CREATE", "auth/role", data=role)
    user = unique("user")
    await ok(cws, "CREATE", "auth/user", data={"username": user, "password": "a-password-1", "roles": [role["id"]]})
    async with clocked.connect() as anonymous:
        login = await rpc(
            anonymous,
            {"method": "CREATE", "endpoint": "auth/token", "data": {"username": user, "password": "a-password-1"}},
        )
    flow = (await ok(cws, "LIST", FLOW, namespace=namespace))[0]
    async with clocked.connect(login["data"]["token"]) as theirs:
        other = await ok(theirs, "RUN", FLOW, objectid=flow["id"], data={"name": "o"}, namespace=namespace)
    assert sorted(await listed(cws, namespace, owner="admin")) == sorted(mine)
    assert await listed(cws, namespace, owner=user) == [other["id"]]
    assert await listed(cws, namespace, owner="nobody") == []
    assert len(await listed(cws, namespace)) == 3


async def test_the_filters_and_sort_over_http(clocked: Clocked, cws: ClientConnection) -> None:
    import asyncio

    from tests.endpoints.flows.test_transports import http

    namespace = unique("ns")
    ids = [r["id"] for r in await started(cws, namespace, 2)]
    path = f"/api/flows/flows/execution/?namespace={namespace}"
    status, answer = await asyncio.to_thread(http, clocked, "GET", path + "&owner=nobody")
    assert (status, answer["data"]) == (200, [])
    status, answer = await asyncio.to_thread(http, clocked, "GET", path + "&startedAfter=2030-01-01")
    assert (status, answer["errorcode"]) == (400, "INVALID_REQUEST") and "startedAfter" in answer["message"]
    status, answer = await asyncio.to_thread(http, clocked, "GET", path + "&createdAfter=2030-01-01")
    assert (status, answer["data"]) == (200, [])
    status, answer = await asyncio.to_thread(http, clocked, "GET", path + "&sort=created&owner=admin")
    assert [e["id"] for e in answer["data"]] == ids
