"""Versions over websockets: every object carries one, and ``parameters.version`` makes UPDATE
and DELETE conditional (CONFLICT on a stale version, nothing changed), on both websocket entries."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import ClientConnection

from tests.flowbus.helpers import call, ok, unique
from tests.support import ENTRIES


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """The tests run against both websocket entries."""
    return str(request.param)


async def test_every_write_moves_the_version(ws: ClientConnection) -> None:
    """CREATE answers version 1; each UPDATE adds one; OPEN and LIST show it."""
    ns = unique()
    created = await ok(ws, "CREATE", data={"name": "v"}, namespace=ns)
    assert created["version"] == 1
    updated = await ok(ws, "UPDATE", objectid=created["id"], data={"name": "w"}, namespace=ns)
    assert updated["version"] == 2
    assert (await ok(ws, "OPEN", objectid=created["id"], namespace=ns))["version"] == 2
    assert [o["version"] for o in await ok(ws, "LIST", namespace=ns)] == [2]


async def test_stale_version_is_conflict_and_changes_nothing(ws: ClientConnection) -> None:
    """UPDATE and DELETE with an old parameters.version answer CONFLICT; the right one writes."""
    ns = unique()
    created = await ok(ws, "CREATE", data={"name": "v", "n": 1}, namespace=ns)
    oid = created["id"]
    await ok(ws, "UPDATE", objectid=oid, data={"n": 2}, namespace=ns, parameters={"version": 1})
    for method, data in (("UPDATE", {"n": 3}), ("DELETE", None)):
        answer = await call(ws, method, objectid=oid, data=data, namespace=ns, parameters={"version": 1})
        assert answer["success"] is False and answer["errorcode"] == "CONFLICT", answer
        assert "version is 2" in answer["message"]
    opened = await ok(ws, "OPEN", objectid=oid, namespace=ns)
    assert (opened["n"], opened["version"]) == (2, 2)
    assert (await ok(ws, "DELETE", objectid=oid, namespace=ns, parameters={"version": "2"}))["n"] == 2


@pytest.mark.parametrize("version", [0, -1, "two", 1.5, [1], True])
async def test_bad_version_is_invalid_request(ws: ClientConnection, version: object) -> None:
    """A version that is not a positive integer answers INVALID_REQUEST and writes nothing."""
    ns = unique()
    created = await ok(ws, "CREATE", data={"name": "v"}, namespace=ns)
    answer = await call(
        ws, "UPDATE", objectid=created["id"], data={"name": "x"}, namespace=ns, parameters={"version": version}
    )
    assert answer["errorcode"] == "INVALID_REQUEST", answer
    assert (await ok(ws, "OPEN", objectid=created["id"], namespace=ns))["name"] == "v"
