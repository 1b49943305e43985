"""The flows configuration API (/flows), driven with the document's own examples against a
served bus: its base URL (``app_url``) is the bus's HTTP address, its command requests are sent
as written, and each answer is the document's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.flowbus.helpers import unique
from tests.support import Served, rpc, ws_connect

# -- the document's examples, verbatim --------------------------------------------------------

START = """{
  "command": "start",
  "flow_ids": ["flow1", "flow2"]
}"""

START_RESPONSE = """{
  "status": "Flows started",
  "details": [
    {"flow_id": "flow1", "status": "running"},
    {"flow_id": "flow2", "status": "running"}
  ]
}"""

STOP = """{
  "command": "stop",
  "flow_ids": ["flow1", "flow2"],
  "type": 0
}"""

STOP_RESPONSE = """{
  "status": "Flows stopped",
  "details": [
    {"flow_id": "flow1", "status": "stopped"},
    {"flow_id": "flow2", "status": "stopped"}
  ]
}"""

PAUSE = """{
  "command": "pause",
  "flow_ids": ["flow1", "flow2"]
}"""

PAUSE_RESPONSE = """{
  "status": "Flows paused",
  "details": [
    {"flow_id": "flow1", "status": "paused"},
    {"flow_id": "flow2", "status": "paused"}
  ]
}"""

RESUME = """{
  "command": "resume",
  "flow_ids": ["flow1", "flow2"]
}"""

RESUME_RESPONSE = """{
  "status": "Flows resumed",
  "details": [
    {"flow_id": "flow1", "status": "running"},
    {"flow_id": "flow2", "status": "running"}
  ]
}"""

EXAMPLES = [(START, START_RESPONSE), (STOP, STOP_RESPONSE), (PAUSE, PAUSE_RESPONSE), (RESUME, RESUME_RESPONSE)]


def configuration(name: str, **fields: Any) -> dict[str, Any]:
    """A flow that waits for the event ``go``, then ends."""
    return {
        "name": name,
        "startState": "wait",
        "states": {
            "wait": {"action": "wait", "event": "go", "transitions": [{"on": "go", "to": "end"}]},
            "end": {"action": "end"},
        },
        **fields,
    }


@pytest.fixture
async def client(bus: Served) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the document's API: ``app_url`` is the bus's HTTP address; a bearer token."""
    app_url = bus.http_url
    async with aiohttp.ClientSession(base_url=app_url, headers={"Authorization": f"Bearer {bus.token}"}) as session:
        yield session


async def call(
    session: aiohttp.ClientSession, verb: str, path: str, body: Any = None, namespace: str = ""
) -> tuple[int, Any]:
    """One request (in ``namespace`` when given); its status and its JSON body."""
    headers = {"Flow-Request-Namespace": namespace} if namespace else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["data"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        headers["Content-Type"] = "application/json"
    async with session.request(verb, path, **kwargs) as response:
        assert response.content_type == "application/json"
        return response.status, orjson.loads(await response.read())


def error(body: Any, errorcode: str) -> dict[str, Any]:
    """A refusal's body: the error's message, its code and errorid (and field, when known)."""
    assert isinstance(body, dict) and body["errorcode"] == errorcode and body["error"] and body["errorid"], body
    return body


async def test_the_documents_commands_answer_as_documented(client: aiohttp.ClientSession) -> None:
    """flow1 and flow2 (one named by ``id``, one by ``flow_id``), then each example command as written."""
    status, added = await call(
        client, "POST", "/flows", [configuration("first", id="flow1"), configuration("second", flow_id="flow2")]
    )
    assert status == 201, added
    assert [c["id"] for c in added] == ["flow1", "flow2"]
    for request, response in EXAMPLES:
        status, answer = await call(client, "PATCH", "/flows/commands", request)
        assert (status, answer) == (200, json.loads(response))
    status, statuses = await call(client, "GET", "/flows/status")
    assert status == 200 and isinstance(statuses, dict)
    assert {flow_id: s["state"] for flow_id, s in statuses.items()} == {"flow1": "running", "flow2": "running"}
    assert statuses["flow1"]["flow_id"] == "flow1" and statuses["flow1"]["name"] == "first"


async def test_commands_move_the_flows_executions(client: aiohttp.ClientSession, bus: Served) -> None:
    namespace = unique("ns")
    status, added = await call(client, "POST", "/flows", [configuration("waits", id="w1")], namespace)
    async with ws_connect(bus.port_url, token=bus.token) as ws:
        started = await rpc(ws, {"method": "RUN", "endpoint": "flows/flow", "objectid": "w1", "namespace": namespace})
        execution = started["data"]["id"]
        for _ in range(500):
            status, one = await call(client, "GET", "/flows/status/w1", namespace=namespace)
            if one["executions"]["WAITING"] == 1:
                break
            await asyncio.sleep(0.01)
        assert (status, one["state"], one["executions"]["WAITING"]) == (200, "running", 1)
        status, answer = await call(client, "PATCH", "/flows/commands", {"command": "stop", "type": 1}, namespace)
        assert (status, answer) == (
            200,
            {"status": "Flows stopped", "details": [{"flow_id": "w1", "status": "stopped"}]},
        )
        opened = await rpc(
            ws, {"method": "OPEN", "endpoint": "flows/execution", "objectid": execution, "namespace": namespace}
        )
        assert opened["data"]["status"] == "CANCELED"
    status, one = await call(client, "GET", "/flows/status/w1", namespace=namespace)
    assert (one["state"], one["executions"]["CANCELED"], one["executions"]["WAITING"]) == ("stopped", 1, 0)


async def test_configurations_are_added_read_updated_and_deleted(client: aiohttp.ClientSession) -> None:
    namespace = unique("ns")
    status, added = await call(client, "POST", "/flows", [configuration("a", id="a1"), configuration("b")], namespace)
    assert status == 201 and [c["name"] for c in added] == ["a", "b"] and added[0]["id"] == "a1"
    status, listed = await call(client, "GET", "/flows", namespace=namespace)
    assert (status, listed) == (200, added)
    status, one = await call(client, "GET", "/flows/a1", namespace=namespace)
    assert (status, one) == (200, added[0])
    status, by_name = await call(client, "GET", "/flows/b", namespace=namespace)
    assert (status, by_name["id"]) == (200, added[1]["id"])
    status, body = await call(client, "GET", "/flows/nope", namespace=namespace)
    assert status == 404 and error(body, "DO_NOT_EXIST")

    status, updated = await call(client, "PUT", "/flows/a1", {**one, "description": "changed"}, namespace)
    assert status == 200 and updated["description"] == "changed" and updated["id"] == "a1"
    assert updated["version"] == 2
    status, body = await call(client, "PUT", "/flows/a1", {"startState": "nowhere"}, namespace)
    assert status == 400 and error(body, "INVALID_DATA")["field"] == "startState"
    status, body = await call(client, "PUT", "/flows/a1", [{"description": "x"}], namespace)
    assert status == 400 and error(body, "INVALID_REQUEST")
    status, body = await call(client, "PUT", "/flows/a1", {"name": "b"}, namespace)
    assert status == 400 and error(body, "CONFLICT")
    status, body = await call(client, "PUT", "/flows/nope", {"description": "x"}, namespace)
    assert status == 400 and error(body, "DO_NOT_EXIST")

    status, deleted = await call(client, "DELETE", "/flows/a1", namespace=namespace)
    assert (status, deleted["id"], deleted["description"]) == (200, "a1", "changed")
    status, body = await call(client, "DELETE", "/flows/a1", namespace=namespace)
    assert status == 400 and error(body, "DO_NOT_EXIST")
    status, body = await call(client, "GET", "/flows/a1", namespace=namespace)
    assert status == 404
    status, listed = await call(client, "GET", "/flows", namespace=namespace)
    assert [c["name"] for c in listed] == ["b"]


@pytest.mark.parametrize(
    ("body", "errorcode", "field"),
    [
        pytest.param({"id": "x", **configuration("x")}, "INVALID_REQUEST", None, id="not-an-array"),
        pytest.param("[{not json", "INVALID_REQUEST", None, id="not-json"),
        pytest.param([], "INVALID_REQUEST", None, id="empty"),
        pytest.param(
            [configuration("ok"), configuration("bad", startState="nowhere")],
            "INVALID_DATA",
            "[1].startState",
            id="invalid",
        ),
        pytest.param([configuration("ok"), configuration("bad", id="a b")], "INVALID_DATA", "[1].id", id="bad-id"),
        pytest.param([configuration("ok"), configuration("kept")], "CONFLICT", None, id="name-taken"),
        pytest.param([configuration("ok"), 5], "INVALID_DATA", "[1]", id="not-an-object"),
    ],
)
async def test_a_bad_post_is_400_with_details_and_stores_nothing(
    client: aiohttp.ClientSession, body: Any, errorcode: str, field: str | None
) -> None:
    namespace = unique("ns")
    status, kept = await call(client, "POST", "/flows", [configuration("kept")], namespace)
    assert status == 201
    status, answer = await call(client, "POST", "/flows", body, namespace)
    assert status == 400
    assert error(answer, errorcode).get("field") == field
    status, listed = await call(client, "GET", "/flows", namespace=namespace)
    assert listed == kept


async def test_statuses(client: aiohttp.ClientSession) -> None:
    namespace = unique("ns")
    status, statuses = await call(client, "GET", "/flows/status", namespace=namespace)
    assert (status, statuses) == (200, {})
    await call(
        client, "POST", "/flows", [configuration("s1", id="s1"), configuration("s2", id="s2", disabled=True)], namespace
    )
    status, statuses = await call(client, "GET", "/flows/status", namespace=namespace)
    assert status == 200 and list(statuses) == ["s1", "s2"]
    assert (statuses["s1"]["state"], statuses["s2"]["state"]) == ("running", "disabled")
    assert set(statuses["s1"]["executions"]) >= {"RUNNING", "WAITING", "SUCCESS", "CANCELED"}
    status, one = await call(client, "GET", "/flows/status/s2", namespace=namespace)
    assert (status, one) == (200, statuses["s2"])
    status, body = await call(client, "GET", "/flows/status/nope", namespace=namespace)
    assert status == 404 and error(body, "DO_NOT_EXIST")


@pytest.mark.parametrize(
    ("body", "errorcode"),
    [
        pytest.param({"command": "explode", "flow_ids": ["c1"]}, "INVALID_REQUEST", id="unknown-command"),
        pytest.param({"flow_ids": ["c1"]}, "INVALID_REQUEST", id="no-command"),
        pytest.param({"command": 1}, "INVALID_REQUEST", id="command-not-a-string"),
        pytest.param({"command": "stop", "flow_ids": ["c1"], "type": 7}, "INVALID_DATA", id="bad-type"),
        pytest.param({"command": "start", "flow_ids": "c1"}, "INVALID_DATA", id="flow-ids-not-a-list"),
        pytest.param({"command": "start", "flow_ids": ["c1", "nope"]}, "DO_NOT_EXIST", id="unknown-flow"),
        pytest.param(["start"], "INVALID_REQUEST", id="not-an-object"),
        pytest.param("{", "INVALID_REQUEST", id="not-json"),
    ],
)
async def test_a_bad_command_is_400_and_changes_nothing(
    client: aiohttp.ClientSession, body: Any, errorcode: str
) -> None:
    namespace = unique("ns")
    await call(client, "POST", "/flows", [configuration("c1", id="c1")], namespace)
    await call(client, "PATCH", "/flows/commands", {"command": "pause"}, namespace)
    status, answer = await call(client, "PATCH", "/flows/commands", body, namespace)
    assert status == 400 and error(answer, errorcode)
    status, one = await call(client, "GET", "/flows/status/c1", namespace=namespace)
    assert one["state"] == "paused"


async def test_without_flow_ids_a_command_is_for_every_flow(client: aiohttp.ClientSession) -> None:
    namespace = unique("ns")
    await call(client, "POST", "/flows", [configuration("e1", id="e1"), configuration("e2", id="e2")], namespace)
    status, answer = await call(client, "PATCH", "/flows/commands", {"command": "pause"}, namespace)
    assert (status, answer) == (
        200,
        {
            "status": "Flows paused",
            "details": [{"flow_id": "e1", "status": "paused"}, {"flow_id": "e2", "status": "paused"}],
        },
    )


async def test_callers_need_credentials(bus: Served) -> None:
    async with aiohttp.ClientSession(base_url=bus.http_url) as stranger:
        for verb, path in (("GET", "/flows"), ("GET", "/flows/status"), ("PATCH", "/flows/commands")):
            status, body = await call(stranger, verb, path, {"command": "start"} if verb == "PATCH" else None)
            assert status == 401 and error(body, "AUTH_REQUIRED")


async def test_the_openapi_document_describes_the_api(client: aiohttp.ClientSession) -> None:
    from openapi_spec_validator import validate

    status, document = await call(client, "GET", "/api/openapi.json")
    validate(document)
    paths = document["paths"]
    assert set(paths["/flows"]) == {"get", "post"}
    assert set(paths["/flows/{flow_id}"]) == {"parameters", "get", "put", "delete"}
    assert set(paths["/flows/status"]) == {"get"} and set(paths["/flows/status/{flow_id}"]) == {"parameters", "get"}
    assert set(paths["/flows/commands"]) == {"patch"}
    assert "400" in paths["/flows/{flow_id}"]["delete"]["responses"]


async def test_configurations_named_like_the_documents_paths(client: aiohttp.ClientSession) -> None:
    """GET /flows/status is every status; a configuration with the id ``status`` is read by its
    name, and written by its id; ``commands`` is an id like any other but for PATCH."""
    namespace = unique("ns")
    status, added = await call(
        client, "POST", "/flows", [configuration("s", id="status"), configuration("c", id="commands")], namespace
    )
    assert status == 201
    status, statuses = await call(client, "GET", "/flows/status", namespace=namespace)
    assert list(statuses) == ["status", "commands"]
    status, by_name = await call(client, "GET", "/flows/s", namespace=namespace)
    assert (status, by_name["id"]) == (200, "status")
    status, changed = await call(client, "PUT", "/flows/status", {"description": "d"}, namespace)
    assert (status, changed["description"]) == (200, "d")
    status, opened = await call(client, "GET", "/flows/commands", namespace=namespace)
    assert (status, opened["id"]) == (200, "commands")
    status, deleted = await call(client, "DELETE", "/flows/commands", namespace=namespace)
    assert (status, deleted["id"]) == (200, "commands")
