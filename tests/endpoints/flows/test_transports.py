"""The flow engine through both transports: streaming over websockets (the port and /ws), the
seeds' calls over HTTP (JSON and XML), and definitions created several at once."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, approval, three_states
from tests.flowbus.helpers import fails, ok, unique


@pytest.mark.parametrize("path", ["websocket", "/ws"])
async def test_stream_sends_progress_then_the_answer(clocked: Clocked, path: str) -> None:
    url = clocked.bus.url("websocket") if path == "websocket" else clocked.http.replace("http", "ws", 1) + "/ws"
    from tests.support import ws_connect

    async with ws_connect(url, token=clocked.token) as ws:
        flow = await ok(ws, "CREATE", FLOW, data=three_states(unique("streamed")))
        request = {"method": "RUN", "endpoint": FLOW, "objectid": flow["id"], "data": {"name": "s"}}
        await ws.send(json.dumps({**request, "parameters": {"stream": True}, "requestid": "r-1"}))
        messages = []
        while True:
            message = orjson.loads(await ws.recv())
            messages.append(message)
            if message["status"] == 0:
                break
    interim, final = messages[:-1], messages[-1]
    assert interim and all(m["status"] == 1 and m["requestid"] == "r-1" and m["success"] for m in interim)
    assert [m["data"]["status"] for m in interim][0] == "RUNNING"
    assert (final["requestid"], final["data"]["status"], final["data"]["percentage"]) == ("r-1", "SUCCESS", 100)
    assert final["data"]["output"]["id"]


def http(
    clocked: Clocked, verb: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else None)
    request = urllib.request.Request(
        clocked.http + path,
        data=data,
        method=verb,
        headers={"Authorization": f"Bearer {clocked.token}", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw.decode()


async def test_seed_calls_over_http(clocked: Clocked) -> None:
    import asyncio

    status, created = await asyncio.to_thread(http, clocked, "POST", "/api/flows/flows/flow/", approval("over-http"))
    assert status == 201, created
    flow = created["data"]
    status, run = await asyncio.to_thread(
        http,
        clocked,
        "POST",
        f"/api/flows/flows/flow/{flow['id']}?tags=a,b",
        {"name": "h-1"},
        {"Flow-Request-Method": "RUN"},
    )
    assert status == 200, run
    execution = run["data"]["id"]
    for _ in range(500):
        status, opened = await asyncio.to_thread(http, clocked, "GET", f"/api/flows/flows/execution/{execution}")
        if opened["data"]["status"] == "WAITING":
            break
        await asyncio.sleep(0.01)
    assert opened["data"]["tags"] == ["a", "b"]
    status, listed = await asyncio.to_thread(
        http, clocked, "GET", "/api/flows/flows/execution/?tag=a&tag=b&flowName=over-http"
    )
    assert [e["id"] for e in listed["data"]] == [execution]
    status, listed = await asyncio.to_thread(http, clocked, "GET", "/api/flows/flows/execution/?tag=a&tag=zzz")
    assert listed["data"] == []
    status, state = await asyncio.to_thread(
        http, clocked, "GET", f"/api/flows/flows/execution/{execution}?state=create"
    )
    assert state["data"]["name"] == "create"
    status, tagged = await asyncio.to_thread(
        http, clocked, "PUT", f"/api/flows/flows/execution/{execution}", {"addTags": ["c"]}
    )
    assert tagged["data"]["tags"] == ["a", "b", "c"]
    status, event = await asyncio.to_thread(
        http,
        clocked,
        "POST",
        "/api/flows/flows/event/approve",
        {"input": {"ok": True, "by": "http"}, "tags": ["c"]},
        {"Flow-Request-Method": "RUN"},
    )
    assert event["data"]["transitions"] == [{"contextId": execution, "state": "done"}]
    status, command = await asyncio.to_thread(
        http,
        clocked,
        "POST",
        "/api/flows/flows/command/stop",
        {"flow_ids": [flow["id"]], "type": 0},
        {"Flow-Request-Method": "RUN"},
    )
    assert command["data"] == {"status": "Flows stopped", "details": [{"flow_id": flow["id"], "status": "stopped"}]}
    status, flows_status = await asyncio.to_thread(http, clocked, "GET", f"/api/flows/flows/status/{flow['id']}")
    assert flows_status["data"]["state"] == "stopped"
    assert flows_status["data"]["executions"]["SUCCESS"] == 1
    status, refused = await asyncio.to_thread(
        http, clocked, "POST", f"/api/flows/flows/flow/{flow['id']}", {"name": "x"}, {"Flow-Request-Method": "RUN"}
    )
    assert (status, refused["errorcode"]) == (409, "CONFLICT")


async def test_xml_input_and_xml_answer(clocked: Clocked, cws: ClientConnection) -> None:
    import asyncio

    flow = await ok(cws, "CREATE", FLOW, data=approval("xml-in"))
    body = b"<?xml version='1.0'?><data><name>from-xml</name></data>"
    headers = {"Content-Type": "application/xml", "Accept": "application/xml", "Flow-Request-Method": "RUN"}
    status, answer = await asyncio.to_thread(
        http, clocked, "POST", f"/api/flows/flows/flow/{flow['id']}?wait=true", body, headers
    )
    assert status == 200
    assert isinstance(answer, str) and "<dataType>XML</dataType>" in answer and "<status>WAITING</status>" in answer
    executions = await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"]})
    assert executions[0]["input"] == {"name": "from-xml"}
    assert executions[0]["vars"]["device"]["name"] == "from-xml"


async def test_create_several_definitions_all_or_none(cws: ClientConnection) -> None:
    namespace = unique("ns")
    created = await ok(cws, "CREATE", FLOW, data=[approval("a"), approval("b")], namespace=namespace)
    assert [f["name"] for f in created] == ["a", "b"]
    bad = approval("d")
    bad["startState"] = "nowhere"
    answer = await fails(cws, "INVALID_DATA", "CREATE", FLOW, data=[approval("c"), bad], namespace=namespace)
    assert answer["field"] == "[1].startState"
    await fails(cws, "CONFLICT", "CREATE", FLOW, data=[approval("e"), approval("a")], namespace=namespace)
    await fails(cws, "CONFLICT", "CREATE", FLOW, data=[approval("f"), approval("f")], namespace=namespace)
    names = sorted(f["name"] for f in await ok(cws, "LIST", FLOW, namespace=namespace))
    assert names == ["a", "b"]
    await fails(cws, "INVALID_REQUEST", "CREATE", FLOW, data=[], namespace=namespace)
    await fails(cws, "INVALID_DATA", "CREATE", FLOW, data=[1], namespace=namespace)


async def test_collections_take_arrays_and_other_endpoints_refuse_them(cws: ClientConnection) -> None:
    namespace = unique("ns")
    devices = await ok(cws, "CREATE", "inventory/device", data=[{"name": "x"}, {"name": "y"}], namespace=namespace)
    assert [d["name"] for d in devices] == ["x", "y"]
    answer = await fails(
        cws, "INVALID_DATA", "CREATE", "inventory/device", data=[{"name": "z"}, {"nom": 1}], namespace=namespace
    )
    assert answer["field"].startswith("[1]")
    assert len(await ok(cws, "LIST", "inventory/device", namespace=namespace)) == 2
    await fails(
        cws,
        "INVALID_REQUEST",
        "UPDATE",
        "inventory/device",
        objectid=devices[0]["id"],
        data=[{"name": "q"}],
        namespace=namespace,
    )
    await fails(cws, "INVALID_REQUEST", "CREATE", "auth/token", data=[{"username": "admin"}])
    await fails(cws, "INVALID_REQUEST", "CREATE", "inventory/device", data=[{"name": "n"}] * 1001, namespace=namespace)


async def test_the_rest_of_the_seeds_over_http(clocked: Clocked) -> None:
    """flows-config CRUD with an array POST, clone and run (integrator), progress (smart-flows),
    definition by name, tag removal and terminate (Flux), all over HTTP."""
    import asyncio

    def call(verb: str, path: str, body: Any = None, method: str | None = None) -> tuple[int, Any]:
        headers = {"Flow-Request-Method": method} if method else None
        return http(clocked, verb, "/api/flows/flows/" + path, body, headers)

    status, created = await asyncio.to_thread(call, "POST", "flow/", [approval("h-a"), approval("h-b")])
    assert status == 201 and [f["name"] for f in created["data"]] == ["h-a", "h-b"]
    first = created["data"][0]["id"]
    status, listed = await asyncio.to_thread(call, "GET", "flow/")
    assert {f["name"] for f in listed["data"]} >= {"h-a", "h-b"}
    status, renamed = await asyncio.to_thread(call, "PUT", f"flow/{first}", {"description": "by http"})
    assert (status, renamed["data"]["description"]) == (200, "by http")
    status, by_name = await asyncio.to_thread(call, "GET", "flow/h-a")
    assert (status, by_name["data"]["id"]) == (200, first)
    status, missing = await asyncio.to_thread(call, "GET", "flow/no-such-flow")
    assert (status, missing["errorcode"]) == (404, "DO_NOT_EXIST")
    status, clone = await asyncio.to_thread(call, "POST", f"flow/{first}?operation=clone", None, "RUN")
    assert (status, clone["data"]["name"], clone["data"]["disabled"]) == (200, "h-a (copy)", True)
    status, run = await asyncio.to_thread(call, "POST", f"flow/{first}?tags=x,y", {"name": "h"}, "RUN")
    execution = run["data"]["id"]
    for _ in range(500):
        status, progress = await asyncio.to_thread(call, "GET", f"execution/{execution}?view=progress")
        if progress["data"]["status"] == "WAITING":
            break
        await asyncio.sleep(0.01)
    assert set(progress["data"]) >= {"id", "status", "percentage", "message", "flow"}
    status, untagged = await asyncio.to_thread(call, "PUT", f"execution/{execution}", {"removeTags": ["x"]})
    assert untagged["data"]["tags"] == ["y"]
    status, definition = await asyncio.to_thread(call, "GET", f"execution/{execution}?view=definition")
    assert definition["data"]["name"] == "h-a"
    status, terminated = await asyncio.to_thread(call, "DELETE", f"execution/{execution}")
    assert (status, terminated["data"]["status"]) == (200, "CANCELED")
    status, again = await asyncio.to_thread(call, "DELETE", f"execution/{execution}")
    assert (status, again["errorcode"]) == (409, "CONFLICT")
    status, deleted = await asyncio.to_thread(call, "DELETE", f"flow/{created['data'][1]['id']}")
    assert status == 200
    status, gone = await asyncio.to_thread(call, "GET", f"flow/{created['data'][1]['id']}")
    assert status == 404


async def test_a_stale_version_of_a_definition_is_a_conflict(cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=approval("versioned"))
    changed = await ok(cws, "UPDATE", FLOW, objectid=flow["id"], data={"description": "one"}, parameters={"version": 1})
    assert changed["version"] == 2
    await fails(
        cws, "CONFLICT", "UPDATE", FLOW, objectid=flow["id"], data={"description": "two"}, parameters={"version": 1}
    )
    await fails(cws, "CONFLICT", "DELETE", FLOW, objectid=flow["id"], parameters={"version": 1})
    kept = await ok(cws, "OPEN", FLOW, objectid=flow["id"])
    assert (kept["description"], kept["version"]) == ("one", 2)
