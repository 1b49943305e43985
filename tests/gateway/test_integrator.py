"""integrator.io's Flow API (/v1/flows), driven with the document's own examples against a
served bus: the requests as written (host, port and token substituted), the sample flows as
bodies, and each answer as the document gives it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.flowbus.helpers import unique
from tests.support import Served, rpc, ws_connect

# -- the document's examples, verbatim --------------------------------------------------------

GET_SIMPLE = """GET /v1/flows/55ea78c6b751843c37b7b367 HTTP/1.1
Host: api.integrator.io
Authorization: Bearer my_api_token
"""

SIMPLE_RESPONSE = """{
    "_id": "123ab456c789de1011fg12h13i",
    "lastModified": "2017-06-19T21:27:09.945Z",
    "name": "Send GitHub Events to Slack",
    "disabled": false,
    "timezone": "America/Los_Angeles",
    "_exportId": "55ea776bb751843c37b7ac6ab0",
    "_importId": "55ea78c546cf5825294aca0b",
    "_integrationId": "58f107a36b3bdd4f87aca76b",
    "skipRetries": false,
    "createdAt": "2017-06-19T21:27:09.900Z"
}"""

GET_ORCHESTRATED = """GET /v1/flows/5980e7fedd9939649f8a5d9a HTTP/1.1
Host: api.integrator.io
Authorization: Bearer my_api_token
"""

ORCHESTRATED_RESPONSE = """{
    "_id": "123ab456c789de1011fg12h13i",
    "lastModified": "2017-08-19T17:04:54.005Z",
    "name": "Update Usage Stats for all Trialers",
    "disabled": false,
    "schedule": "? 0 2 ? * *",
    "timezone": "America/Los_Angeles",
    "_integrationId": "58f107a36b3bdd4f87aca76b",
    "skipRetries": false,
    "pageProcessors": [
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "numConnections"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "dlSuccessAndErrors"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "lastSignIn"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "numDataLoaders"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "numFlows"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "numPasswordChanges"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "numPasswordResets"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "numSignIns"
                    }
                ]
            }
        },
        {
            "type": "export",
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": [
                    {
                        "extract": "data",
                        "generate": "successAndErrors"
                    }
                ]
            }
        },
        {
            "type": "import",
            "_importId": "55ea776bb751843c37b7ac6ab0",
            "proceedOnFailure": true,
            "responseMapping": {
                "lists": [],
                "fields": []
            }
        },
        {
            "type": "import",
            "_importId": "55ea776bb751843c37b7ac6ab0",
            "responseMapping": {
                "lists": [],
                "fields": []
            }
        }
    ],
    "pageGenerators": [
        {
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "_id": "123ab456c789de1011fg12h13i"
        },
        {
            "_exportId": "55ea776bb751843c37b7ac6ab0",
            "_id": "123ab456c789de1011fg12h13i"
        }
    ],
    "createdAt": "2017-08-01T20:43:42.156Z"
}"""

SERVER_FIELDS = ("_id", "createdAt", "lastModified")
MILLISECONDS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def sample(text: str) -> dict[str, Any]:
    """A sample flow without what the server sets (its id and timestamps)."""
    flow: dict[str, Any] = json.loads(text)
    return {k: v for k, v in flow.items() if k not in SERVER_FIELDS}


def mine(flow: dict[str, Any]) -> dict[str, Any]:
    """An answered flow without what the server sets, after checking that it is there."""
    assert isinstance(flow["_id"], str) and flow["_id"]
    assert re.fullmatch(MILLISECONDS, flow["createdAt"]) and re.fullmatch(MILLISECONDS, flow["lastModified"])
    return {k: v for k, v in flow.items() if k not in SERVER_FIELDS}


def with_states(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "disabled": False,
        "_integrationId": "58f107a36b3bdd4f87aca76b",
        "startState": "note",
        "states": {
            "note": {"action": "set", "vars": {"seen": "=input.n"}, "transitions": [{"on": "success", "to": "end"}]},
            "end": {"action": "end", "output": {"n": "=vars.seen"}},
        },
    }


async def as_written(bus: Served, text: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
    """Send a request written as the document writes it, its Host and token substituted."""
    where = urlsplit(bus.http_url)
    lines = []
    for line in text.strip("\n").split("\n"):
        if line.startswith("Host: "):
            line = f"Host: {where.netloc}"
        elif line.startswith("Authorization: Bearer "):
            line = f"Authorization: Bearer {token}"
        lines.append(line)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        status_line, *fields = head.strip().split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1]), headers, body


async def call(
    session: aiohttp.ClientSession, verb: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    """One request; its status and its JSON body (None when it has none)."""
    if body is not None:
        kwargs["data"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
    async with session.request(verb, path, **kwargs) as response:
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None


@pytest.fixture
async def api(bus: Served) -> AsyncIterator[aiohttp.ClientSession]:
    """An integrator.io client of the module's bus: a bearer token, the default namespace."""
    headers = {"Authorization": f"Bearer {bus.token}"}
    async with aiohttp.ClientSession(base_url=bus.http_url, headers=headers) as session:
        yield session


def refusal(body: Any, code: str) -> dict[str, Any]:
    """The one error of an integrator.io refusal, checked to carry ``code``."""
    assert set(body) == {"errors"} and len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    assert error["code"] == code and error["message"] and error["errorid"], body
    return error


# -- the examples ------------------------------------------------------------------------------


async def test_the_documents_requests_answer_its_sample_flows(bus: Served) -> None:
    """Both example GETs, sent as written, answer the sample flows, stored under the ids they ask for."""
    async with ws_connect(bus.port_url, token=bus.token) as ws:
        for objectid, text in (
            ("55ea78c6b751843c37b7b367", SIMPLE_RESPONSE),
            ("5980e7fedd9939649f8a5d9a", ORCHESTRATED_RESPONSE),
        ):
            answer = await rpc(
                ws, {"method": "CREATE", "endpoint": "flows/flow", "data": {**sample(text), "id": objectid}}
            )
            assert answer["success"] is True, answer
    for request, text, objectid in (
        (GET_SIMPLE, SIMPLE_RESPONSE, "55ea78c6b751843c37b7b367"),
        (GET_ORCHESTRATED, ORCHESTRATED_RESPONSE, "5980e7fedd9939649f8a5d9a"),
    ):
        status, headers, body = await as_written(bus, request, bus.token)
        assert status == 200 and headers["content-type"].startswith("application/json")
        flow = orjson.loads(body)
        assert flow["_id"] == objectid
        assert mine(flow) == sample(text)
        assert set(flow) == set(json.loads(text))  # the sample's fields, and no others
    status, _, body = await as_written(bus, GET_SIMPLE, "my_api_token")
    assert status == 401
    refusal(orjson.loads(body), "AUTH_FAILED")


async def test_the_sample_flows_are_accepted_verbatim_and_come_back_unchanged(api: aiohttp.ClientSession) -> None:
    namespace = {"Flow-Request-Namespace": unique("ns")}
    created = []
    for text in (SIMPLE_RESPONSE, ORCHESTRATED_RESPONSE):
        status, flow = await call(api, "POST", "/v1/flows", text, headers=dict(namespace))
        assert status == 201, flow
        assert mine(flow) == sample(text) and flow["_id"] != json.loads(text)["_id"]
        created.append(flow)
        status, fetched = await call(api, "GET", f"/v1/flows/{flow['_id']}", headers=namespace)
        assert (status, fetched) == (200, flow)
    status, listed = await call(api, "GET", "/v1/flows", headers=namespace)
    assert (status, listed) == (200, created)
    orchestrated = created[1]
    assert orchestrated["pageGenerators"][0] == {
        "_exportId": "55ea776bb751843c37b7ac6ab0",
        "_id": "123ab456c789de1011fg12h13i",
    }
    assert orchestrated["pageProcessors"][0]["responseMapping"]["fields"] == [
        {"extract": "data", "generate": "numConnections"}
    ]
    assert orchestrated["pageProcessors"][9]["proceedOnFailure"] is True


async def test_running_a_flow_of_exports_and_imports_says_that_nothing_here_runs_it(api: aiohttp.ClientSession) -> None:
    namespace = {"Flow-Request-Namespace": unique("ns")}
    for text in (SIMPLE_RESPONSE, ORCHESTRATED_RESPONSE):
        status, flow = await call(api, "POST", "/v1/flows", text, headers=dict(namespace))
        status, body = await call(api, "POST", f"/v1/flows/{flow['_id']}/run", headers=namespace)
        assert status == 409
        error = refusal(body, "CONFLICT")
        assert "no states" in error["message"] and "nothing runnable" in error["message"]
        assert "55ea776bb751843c37b7ac6ab0" in error["message"]


async def test_a_flow_with_states_runs(api: aiohttp.ClientSession, bus: Served) -> None:
    namespace = unique("ns")
    headers = {"Flow-Request-Namespace": namespace}
    status, flow = await call(api, "POST", "/v1/flows", with_states("with-states"), headers=dict(headers))
    assert status == 201 and flow["states"]["end"] == {"action": "end", "output": {"n": "=vars.seen"}}
    status, run = await call(api, "POST", f"/v1/flows/{flow['_id']}/run", {"n": 7}, headers=dict(headers))
    assert status == 201, run
    assert run["flow"] == {"id": flow["_id"], "name": "with-states"} and run["status"] in (
        "RUNNING",
        "QUEUED",
        "SUCCESS",
    )
    async with ws_connect(bus.port_url, token=bus.token) as ws:
        for _ in range(500):
            opened = await rpc(
                ws, {"method": "OPEN", "endpoint": "flows/execution", "objectid": run["_id"], "namespace": namespace}
            )
            if opened["data"]["status"] == "SUCCESS":
                break
            await asyncio.sleep(0.01)
    assert opened["data"]["output"] == {"n": 7}
    status, again = await call(api, "POST", f"/v1/flows/{flow['_id']}/run", headers=dict(headers))
    assert status == 201, again  # no body: no input
    status, body = await call(api, "POST", f"/v1/flows/{flow['_id']}/run", [1], headers=dict(headers))
    assert status == 400 and refusal(body, "INVALID_REQUEST")


async def test_a_flow_is_cloned_as_often_as_asked(api: aiohttp.ClientSession) -> None:
    namespace = {"Flow-Request-Namespace": unique("ns")}
    status, flow = await call(api, "POST", "/v1/flows", SIMPLE_RESPONSE, headers=dict(namespace))
    names = []
    for _ in range(3):
        status, clone = await call(api, "POST", f"/v1/flows/{flow['_id']}/clone", headers=namespace)
        assert status == 201, clone
        assert clone["_id"] != flow["_id"] and clone["disabled"] is True
        assert {k: v for k, v in mine(clone).items() if k not in ("name", "disabled")} == {
            k: v for k, v in sample(SIMPLE_RESPONSE).items() if k not in ("name", "disabled")
        }
        names.append(clone["name"])
    base = "Send GitHub Events to Slack"
    assert names == [f"{base} (copy)", f"{base} (copy 2)", f"{base} (copy 3)"]
    status, named = await call(
        api, "POST", f"/v1/flows/{flow['_id']}/clone", {"name": "Slack, again"}, headers=dict(namespace)
    )
    assert (status, named["name"]) == (201, "Slack, again")
    status, body = await call(
        api, "POST", f"/v1/flows/{flow['_id']}/clone", {"name": "Slack, again"}, headers=dict(namespace)
    )
    assert status == 409 and "Slack, again" in refusal(body, "CONFLICT")["message"]
    status, body = await call(api, "POST", "/v1/flows/no-such-flow/clone", headers=namespace)
    assert status == 404 and refusal(body, "DO_NOT_EXIST")
    status, listed = await call(api, "GET", "/v1/flows", headers=namespace)
    assert len(listed) == 5


async def test_update_and_delete(api: aiohttp.ClientSession) -> None:
    namespace = {"Flow-Request-Namespace": unique("ns")}
    status, flow = await call(api, "POST", "/v1/flows", SIMPLE_RESPONSE, headers=dict(namespace))
    changed = {**flow, "_id": "ignored", "disabled": True, "timezone": "Europe/Paris"}
    status, updated = await call(api, "PUT", f"/v1/flows/{flow['_id']}", changed, headers=dict(namespace))
    assert status == 200, updated
    assert mine(updated) == {**sample(SIMPLE_RESPONSE), "disabled": True, "timezone": "Europe/Paris"}
    assert updated["_id"] == flow["_id"] and updated["createdAt"] == flow["createdAt"]
    assert updated["lastModified"] >= flow["lastModified"]
    status, by_name = await call(
        api, "PUT", "/v1/flows/Send GitHub Events to Slack", {"disabled": False}, headers=dict(namespace)
    )
    assert (status, by_name["_id"], by_name["disabled"]) == (200, flow["_id"], False)
    status, body = await call(
        api, "PUT", f"/v1/flows/{flow['_id']}", {"schedule": "61 * * * *"}, headers=dict(namespace)
    )
    assert status == 422 and refusal(body, "INVALID_DATA")["field"] == "schedule"
    status, body = await call(api, "PUT", "/v1/flows/no-such-flow", {"disabled": True}, headers=dict(namespace))
    assert status == 404 and refusal(body, "DO_NOT_EXIST")
    async with api.delete(f"/v1/flows/{flow['_id']}", headers=namespace) as response:
        assert response.status == 204 and await response.read() == b""
    status, body = await call(api, "GET", f"/v1/flows/{flow['_id']}", headers=namespace)
    assert status == 404 and refusal(body, "DO_NOT_EXIST")
    status, body = await call(api, "DELETE", f"/v1/flows/{flow['_id']}", headers=namespace)
    assert status == 404 and refusal(body, "DO_NOT_EXIST")


async def test_refusals_are_clear(api: aiohttp.ClientSession, bus: Served) -> None:
    namespace = {"Flow-Request-Namespace": unique("ns")}
    async with aiohttp.ClientSession(base_url=bus.http_url) as stranger:
        status, body = await call(stranger, "GET", "/v1/flows")
        assert status == 401 and refusal(body, "AUTH_REQUIRED")
        status, body = await call(stranger, "POST", "/v1/flows", SIMPLE_RESPONSE, headers={"Authorization": "Basic !!"})
        assert status == 401 and refusal(body, "AUTH_FAILED")
    status, body = await call(api, "POST", "/v1/flows", "{not json", headers=dict(namespace))
    assert status == 400 and refusal(body, "INVALID_REQUEST")
    status, body = await call(api, "POST", "/v1/flows", [json.loads(SIMPLE_RESPONSE)], headers=dict(namespace))
    assert status == 400 and "JSON object" in refusal(body, "INVALID_REQUEST")["message"]
    status, body = await call(api, "POST", "/v1/flows", {"disabled": False}, headers=dict(namespace))
    assert status == 422 and refusal(body, "INVALID_DATA")["field"] == "name"
    status, body = await call(api, "POST", "/v1/flows", {"name": "no parts"}, headers=dict(namespace))
    assert status == 422 and refusal(body, "INVALID_DATA")["field"] == "states"
    status, first = await call(api, "POST", "/v1/flows", SIMPLE_RESPONSE, headers=dict(namespace))
    status, body = await call(api, "POST", "/v1/flows", SIMPLE_RESPONSE, headers=dict(namespace))
    assert status == 409 and refusal(body, "CONFLICT")
    status, body = await call(api, "PATCH", "/v1/flows")
    assert status == 405
    status, listed = await call(api, "GET", "/v1/flows", headers=namespace)
    assert [f["_id"] for f in listed] == [first["_id"]]


async def test_namespaces_keep_flows_apart(api: aiohttp.ClientSession) -> None:
    one, other = unique("ns"), unique("ns")
    status, flow = await call(api, "POST", "/v1/flows", SIMPLE_RESPONSE, headers={"Flow-Request-Namespace": one})
    assert status == 201
    status, body = await call(api, "GET", f"/v1/flows/{flow['_id']}", headers={"Flow-Request-Namespace": other})
    assert status == 404 and refusal(body, "DO_NOT_EXIST")
    status, listed = await call(api, "GET", "/v1/flows", headers={"Flow-Request-Namespace": other})
    assert (status, listed) == (200, [])
    status, fetched = await call(api, "GET", f"/v1/flows/{flow['_id']}", headers={"Flow-Request-Namespace": one})
    assert (status, fetched) == (200, flow)


async def test_the_openapi_document_describes_the_api(api: aiohttp.ClientSession) -> None:
    from openapi_spec_validator import validate

    status, document = await call(api, "GET", "/api/openapi.json")
    validate(document)
    paths = document["paths"]
    assert set(paths["/v1/flows"]) == {"get", "post"}
    assert set(paths["/v1/flows/{_id}"]) == {"parameters", "get", "put", "delete"}
    assert "204" in paths["/v1/flows/{_id}"]["delete"]["responses"]
    assert "201" in paths["/v1/flows/{_id}/clone"]["post"]["responses"]
    assert "201" in paths["/v1/flows/{_id}/run"]["post"]["responses"]
