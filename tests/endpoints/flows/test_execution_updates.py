"""UPDATE of an execution and flows/command: one rule for the stop type, and the version a
write is made on, as for every other object."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, approval, settle
from tests.endpoints.flows.test_transports import http
from tests.flowbus.helpers import fails, ok, unique

COMMAND = "flows/command"


async def waiting(ws: ClientConnection, namespace: str, name: str = "updated") -> dict[str, Any]:
    flow = await ok(ws, "CREATE", FLOW, data=approval(name), namespace=namespace)
    started = await ok(ws, "RUN", FLOW, objectid=flow["id"], data={"name": "u"}, namespace=namespace)
    return await settle(ws, started["id"], namespace)


@pytest.mark.parametrize("kind", [0, 1, "0", "1"])
async def test_the_stop_type_is_an_integer_or_its_decimal_string_for_both(cws: ClientConnection, kind: Any) -> None:
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    stopped = await ok(
        cws, "UPDATE", EXECUTION, objectid=record["id"], data={"command": "stop", "type": kind}, namespace=namespace
    )
    assert stopped["status"] == "CANCELED"
    again = await waiting(cws, namespace, "commanded")
    answer = await ok(
        cws,
        "RUN",
        COMMAND,
        objectid="stop",
        data={"flow_ids": [again["flow"]["id"]], "type": kind},
        namespace=namespace,
    )
    assert answer["details"][0]["status"] == "stopped"
    assert (await ok(cws, "OPEN", EXECUTION, objectid=again["id"], namespace=namespace))["status"] == "CANCELED"


@pytest.mark.parametrize("kind", [2, "2", "one", "", " 1", None, [1]])
async def test_any_other_stop_type_is_refused_by_both(cws: ClientConnection, kind: Any) -> None:
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    data = {"command": "stop", "type": kind}
    answer = await fails(
        cws, "INVALID_DATA", "UPDATE", EXECUTION, objectid=record["id"], data=data, namespace=namespace
    )
    assert answer["field"] == "type"
    data = {"flow_ids": [record["flow"]["id"]], "type": kind}
    answer = await fails(cws, "INVALID_DATA", "RUN", COMMAND, objectid="stop", data=data, namespace=namespace)
    assert answer["field"] == "type"
    assert (await ok(cws, "OPEN", EXECUTION, objectid=record["id"], namespace=namespace))["status"] == "WAITING"


async def test_a_stale_version_is_a_conflict_and_changes_nothing(cws: ClientConnection) -> None:
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    version = record["version"]
    tagged = await ok(
        cws,
        "UPDATE",
        EXECUTION,
        objectid=record["id"],
        data={"addTags": ["a"]},
        parameters={"version": version},
        namespace=namespace,
    )
    assert (tagged["tags"], tagged["version"]) == (["a"], version + 1)
    for data in ({"addTags": ["b"]}, {"removeTags": ["a"]}, {"command": "pause"}, {"command": "stop", "type": 1}):
        await fails(
            cws,
            "CONFLICT",
            "UPDATE",
            EXECUTION,
            objectid=record["id"],
            data=data,
            parameters={"version": version},
            namespace=namespace,
        )
    kept = await ok(cws, "OPEN", EXECUTION, objectid=record["id"], namespace=namespace)
    assert (kept["status"], kept["tags"], kept["version"]) == ("WAITING", ["a"], version + 1)
    paused = await ok(
        cws,
        "UPDATE",
        EXECUTION,
        objectid=record["id"],
        data={"command": "pause"},
        parameters={"version": str(version + 1)},
        namespace=namespace,
    )
    assert (paused["status"], paused["version"]) == ("PAUSED", version + 2)


@pytest.mark.parametrize("version", ["abc", 0, -1, 1.5, "1.0", True])
async def test_a_malformed_version_is_an_invalid_request(cws: ClientConnection, version: Any) -> None:
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    for data in ({"addTags": ["b"]}, {"command": "pause"}):
        await fails(
            cws,
            "INVALID_REQUEST",
            "UPDATE",
            EXECUTION,
            objectid=record["id"],
            data=data,
            parameters={"version": version},
            namespace=namespace,
        )
    kept = await ok(cws, "OPEN", EXECUTION, objectid=record["id"], namespace=namespace)
    assert (kept["status"], kept["tags"], kept["version"]) == ("WAITING", [], record["version"])


async def test_if_match_over_http(clocked: Clocked, cws: ClientConnection) -> None:
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    path = f"/api/flows/flows/execution/{record['id']}?namespace={namespace}"
    stale = {"If-Match": f'"{record["version"] + 5}"'}
    status, answer = await asyncio.to_thread(http, clocked, "PUT", path, {"addTags": ["x"]}, stale)
    assert (status, answer["errorcode"]) == (409, "CONFLICT")
    fresh = {"If-Match": f'"{record["version"]}"'}
    status, answer = await asyncio.to_thread(http, clocked, "PUT", path, {"addTags": ["x"]}, fresh)
    assert (status, answer["data"]["tags"]) == (200, ["x"])
    status, answer = await asyncio.to_thread(http, clocked, "PUT", path + "&version=abc", {"addTags": ["y"]})
    assert (status, answer["errorcode"]) == (400, "INVALID_REQUEST")


async def test_a_delete_honours_the_version_too(cws: ClientConnection) -> None:
    """DELETE (a hard stop) with a stale version is a CONFLICT and stops nothing; a malformed one
    is INVALID_REQUEST; the current one stops the execution."""
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    version = record["version"]
    await ok(cws, "UPDATE", EXECUTION, objectid=record["id"], data={"addTags": ["a"]}, namespace=namespace)
    await fails(
        cws,
        "CONFLICT",
        "DELETE",
        EXECUTION,
        objectid=record["id"],
        parameters={"version": version},
        namespace=namespace,
    )
    await fails(
        cws,
        "INVALID_REQUEST",
        "DELETE",
        EXECUTION,
        objectid=record["id"],
        parameters={"version": "abc"},
        namespace=namespace,
    )
    kept = await ok(cws, "OPEN", EXECUTION, objectid=record["id"], namespace=namespace)
    assert kept["status"] == "WAITING"
    stopped = await ok(
        cws, "DELETE", EXECUTION, objectid=record["id"], parameters={"version": version + 1}, namespace=namespace
    )
    assert stopped["status"] == "CANCELED"
