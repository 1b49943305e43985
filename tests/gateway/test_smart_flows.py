"""The Smart Flows REST API (/api/v1/flows/executions) against a served bus.

The requests are the document's own (smart-flows-api: "Getting started"), with its host, port,
flow id, execution id and API key substituted, and ``http`` for ``https`` (the test bus serves no
TLS); the answers are checked against what the document shows: paths, methods, status codes,
field names and the spelling of the statuses.
"""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from openapi_spec_validator import validate

from tests.endpoints.helpers import admin, ws_call
from tests.flowbus.helpers import unique
from tests.support import Served, serve, serving

CREATE = "https://{host}:{port}/api/v1/flows/executions?flowId={flowId}"
PROGRESS = "https://{host}:{port}/api/v1/flows/executions/{executionId}/progress"
OUTPUT = "https://{host}:{port}/api/v1/flows/executions/{executionId}"
XML_HEADERS = {"Content-Type": 'application/xml; charset="utf-8"'}
STARTED = {"id", "percentage", "message", "status"}
EXECUTION = {"id", "createdAt", "createdBy", "modifiedAt", "modifiedBy", "status", "flow", "state"}
STABLE = ("Success", "Error", "Canceled", "Interrupted")

DOCUMENT: dict[str, Any] = {
    "name": "document",
    "startState": "generate",
    "input": {
        "type": "object",
        "required": ["customer", "copies", "urgent"],
        "properties": {
            "customer": {"type": "string"},
            "copies": {"type": "integer", "minimum": 1},
            "urgent": {"type": "boolean"},
        },
    },
    "states": {
        "generate": {
            "action": "set",
            "message": "Generate document",
            "vars": {"document": {"for": "=input.customer", "pages": "=input.copies"}},
            "transitions": [{"on": "success", "to": "review"}],
        },
        "review": {
            "action": "input",
            "message": "Review the document",
            "schema": {
                "type": "object",
                "required": ["approved"],
                "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
            },
            "model": {"approved": "=input.urgent"},
            "form": ["approved", "note"],
            "result": "review",
            "transitions": [{"on": "success", "to": "done"}],
        },
        "done": {
            "action": "end",
            "message": "Done",
            "output": {"document": "=vars.document", "approved": "=vars.review.approved"},
        },
    },
}


def url(template: str, served: Served, **names: str) -> str:
    """One of the document's URLs, its host and port those of ``served`` (over http)."""
    where = urlsplit(served.http_url)
    return template.replace("https://", "http://").format(host=where.hostname, port=where.port, **names)


@dataclass
class Smart:
    """A served bus, an API key of a user of role operator (the "Super user"), and a session."""

    bus: Served
    user: str
    key: str
    session: aiohttp.ClientSession

    async def request(
        self, verb: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """One request with the API key (unless ``headers`` gives another); status, headers, JSON."""
        sent = {"X-API-Key": self.key, **(headers or {})}
        data = io.BytesIO(body) if body is not None else None
        async with self.session.request(verb, target, data=data, headers=sent) as response:
            return response.status, dict(response.headers), orjson.loads(await response.read())

    async def start(self, flow: str, body: bytes) -> dict[str, Any]:
        status, _, answer = await self.request("POST", url(CREATE, self.bus, flowId=flow), body, XML_HEADERS)
        assert status == 200, answer
        return answer  # type: ignore[no-any-return]

    async def progress(self, execution: str, until: tuple[str, ...] = STABLE) -> dict[str, Any]:
        """The progress, asked again until its status is one of ``until`` (the document's "wait")."""
        for _ in range(2000):
            status, _, answer = await self.request("GET", url(PROGRESS, self.bus, executionId=execution))
            assert status == 200, answer
            if answer["status"] in until:
                return answer  # type: ignore[no-any-return]
            await asyncio.sleep(0.01)
        raise AssertionError(f"the execution stays {answer['status']}")

    async def native(self, method: str, endpoint: str, **fields: Any) -> Any:
        """A call of the bus's own API with the same key."""
        answer = await ws_call(self.bus, self.key, method, endpoint, **fields)
        assert answer["success"] is True, answer
        return answer["data"]


@pytest.fixture(scope="module")
def smart_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus that runs one execution at a time (the next ones are Queued), with the gates app."""
    with serving(
        tmp_path_factory.mktemp("smart"),
        "--app",
        "tests.gateway.gates:create_app",
        env={"FLOWBUS_FLOW_CONCURRENCY": "1"},
    ) as served:
        yield served


async def operator_key(bus: Served) -> tuple[str, str]:
    """A user of role operator and an API key of theirs (the document's first step)."""
    user = unique("super")
    await admin(
        bus, "CREATE", "auth/user", data={"username": user, "password": "a-password-123", "roles": ["operator"]}
    )
    created = await admin(bus, "CREATE", "auth/apikey", data={"owner": user, "label": "smart flows"})
    return user, created["key"]


@pytest.fixture
async def smart(smart_bus: Served) -> AsyncIterator[Smart]:
    user, key = await operator_key(smart_bus)
    async with aiohttp.ClientSession() as session:
        yield Smart(smart_bus, user, key, session)


async def test_the_four_steps_of_the_document(smart: Smart) -> None:
    flow = await smart.native("CREATE", "flows/flow", data=DOCUMENT)
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<document><customer>ACME</customer><copies>3</copies><urgent>true</urgent></document>"""

    # Creating a flow execution
    status, headers, started = await smart.request("POST", url(CREATE, smart.bus, flowId=flow["id"]), body, XML_HEADERS)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert set(started) == STARTED
    assert {k: v for k, v in started.items() if k != "id"} == {
        "percentage": 0,
        "message": "Generate document",
        "status": "Running",
    }

    # Wait for completion: here the flow asks a user first
    progress = await smart.progress(started["id"], until=("User input",))
    assert set(progress) == STARTED | {"schema", "model", "form"}
    assert progress["id"] == started["id"] and 0 < progress["percentage"] < 100
    assert progress["message"] == "Review the document"
    review = DOCUMENT["states"]["review"]
    assert (progress["schema"], progress["model"], progress["form"]) == (
        review["schema"],
        {"approved": True},
        review["form"],
    )
    await smart.native(
        "RUN", "flows/execution", objectid=started["id"], data={"approved": True}, parameters={"operation": "input"}
    )
    progress = await smart.progress(started["id"])
    assert progress == {"id": started["id"], "percentage": 100, "message": "Finished", "status": "Success"}

    # Get flow output
    status, _, execution = await smart.request("GET", url(OUTPUT, smart.bus, executionId=started["id"]))
    assert status == 200 and set(execution) == EXECUTION
    native = await smart.native("OPEN", "flows/execution", objectid=started["id"])
    assert execution["id"] == started["id"] and execution["status"] == "Success"
    assert (execution["createdAt"], execution["modifiedAt"]) == (native["created"], native["updated"])
    assert (execution["createdBy"], execution["modifiedBy"]) == (smart.user, smart.user)
    assert execution["flow"] == {"id": flow["id"], "displayName": "document", "type": "flow"}
    state = execution["state"]
    assert set(state) == {"inputData", "output", "stages", "report"}
    assert state["inputData"] == {"customer": "ACME", "copies": 3, "urgent": True}  # read by the input schema
    assert state["output"] == {"document": {"for": "ACME", "pages": 3}, "approved": True}
    assert [s["name"] for s in state["stages"]] == ["generate", "review", "done"]
    assert [s["message"] for s in state["stages"]] == ["Generate document", "Review the document", "Done"]
    assert state["stages"] == native["stages"] and state["report"] == native["report"]
    assert [line["state"] for line in state["report"]] == ["generate", "review", "done"]


async def test_a_json_body(smart: Smart) -> None:
    flow = await smart.native("CREATE", "flows/flow", data={**DOCUMENT, "name": unique("json")})
    body = orjson.dumps({"customer": "JSON Inc", "copies": 2, "urgent": False})
    status, _, started = await smart.request(
        "POST", url(CREATE, smart.bus, flowId=flow["id"]), body, {"Content-Type": "application/json"}
    )
    assert (status, set(started), started["status"]) == (200, STARTED, "Running")
    progress = await smart.progress(started["id"], until=("User input",))
    assert progress["model"] == {"approved": False}
    status, _, refused = await smart.request(
        "POST", url(CREATE, smart.bus, flowId=flow["id"]), b'{"customer": "x", "copies": "2", "urgent": false}'
    )
    assert (status, refused["errorcode"]) == (422, "INVALID_DATA")  # JSON is taken as it is


def gated(name: str, gate: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "startState": "held",
        "states": {
            "held": {
                "action": "call",
                "endpoint": "gates/gate",
                "method": "RUN",
                "objectid": gate,
                "message": "Held",
                "transitions": [{"on": "success", "to": "end"}],
            },
            "end": {"action": "end"},
        },
        **more,
    }


async def test_statuses_as_the_document_spells_them(smart: Smart) -> None:
    async def flow(definition: dict[str, Any]) -> str:
        created = await smart.native("CREATE", "flows/flow", data={**definition, "name": unique(definition["name"])})
        return str(created["id"])

    async def status_of(execution: str) -> str:
        code, _, answer = await smart.request("GET", url(PROGRESS, smart.bus, executionId=execution))
        assert code == 200, answer
        return str(answer["status"])

    # Running and Queued: this bus runs one execution at a time
    gate = unique("gate")
    held = await flow(gated("held", gate))
    first = await smart.start(held, b"<input/>")
    second = await smart.start(held, b"<input/>")
    assert (first["status"], second["status"]) == ("Running", "Queued")
    assert (await status_of(first["id"]), await status_of(second["id"])) == ("Running", "Queued")
    await smart.native("RUN", "gates/open", objectid=gate)
    assert (await smart.progress(first["id"]))["status"] == "Success"
    assert (await smart.progress(second["id"]))["status"] == "Success"

    # Waiting: for an event, for a time, or paused until resumed
    waits = {
        "name": "waits",
        "startState": "wait",
        "states": {
            "wait": {"action": "wait", "event": "go", "transitions": [{"on": "go", "to": "later"}]},
            "later": {"action": "wait", "seconds": 3600, "transitions": [{"on": "success", "to": "end"}]},
            "end": {"action": "end"},
        },
    }
    waiting = await smart.start(await flow(waits), b"<input/>")
    assert (await smart.progress(waiting["id"], until=("Waiting",)))["message"] == "Running wait"
    await smart.native("RUN", "flows/event", objectid="go", data={"contextId": waiting["id"]})
    assert (await smart.progress(waiting["id"], until=("Waiting",)))["message"] == "Running later"
    assert (await smart.native("OPEN", "flows/execution", objectid=waiting["id"]))["status"] == "WAITING_UNTIL"
    paused = await smart.native("UPDATE", "flows/execution", objectid=waiting["id"], data={"command": "pause"})
    assert (paused["status"], await status_of(waiting["id"])) == ("PAUSED", "Waiting")

    # Canceled: stopped by a user
    await smart.native("DELETE", "flows/execution", objectid=waiting["id"])
    assert await status_of(waiting["id"]) == "Canceled"

    # SelectFlow: the user picks the flow to run
    choose = {
        "name": "choose",
        "startState": "pick",
        "states": {
            "pick": {"action": "choose", "flows": ["document"], "transitions": [{"on": "success", "to": "end"}]},
            "end": {"action": "end"},
        },
    }
    picking = await smart.start(await flow(choose), b"<input/>")
    assert (await smart.progress(picking["id"], until=("SelectFlow",)))["id"] == picking["id"]

    # Error: the flow ends in error
    failing = {"name": "failing", "startState": "end", "states": {"end": {"action": "end", "status": "ERROR"}}}
    failed = await smart.start(await flow(failing), b"<input/>")
    assert (await smart.progress(failed["id"]))["status"] == "Error"
    status, _, execution = await smart.request("GET", url(OUTPUT, smart.bus, executionId=failed["id"]))
    assert (status, execution["status"], execution["state"]["output"]) == (200, "Error", None)


async def test_interrupted_by_a_crash(tmp_path: Path) -> None:
    served = serve(tmp_path, "--app", "tests.gateway.gates:create_app")
    try:
        user, key = await operator_key(served)
        flow = await ws_call(
            served, key, "CREATE", "flows/flow", data=gated("crashes", unique("gate"), onCrash="interrupt")
        )
        async with aiohttp.ClientSession() as session:
            target = url(CREATE, served, flowId=flow["data"]["id"])
            async with session.post(target, data=b"<input/>", headers={**XML_HEADERS, "X-API-Key": key}) as response:
                started = await response.json()
        assert started["status"] == "Running"
        served.stop(signal.SIGKILL)
        served = serve(tmp_path, "--app", "tests.gateway.gates:create_app")
        async with (
            aiohttp.ClientSession() as session,
            session.get(url(PROGRESS, served, executionId=started["id"]), headers={"X-API-Key": key}) as response,
        ):
            assert (response.status, (await response.json())["status"]) == (200, "Interrupted")
    finally:
        served.stop()


async def test_refusals_are_the_bus_error_envelopes(smart: Smart) -> None:
    flow = await smart.native("CREATE", "flows/flow", data={**DOCUMENT, "name": unique("refusals")})
    create = url(CREATE, smart.bus, flowId=flow["id"])
    good = b"<d><customer>c</customer><copies>1</copies><urgent>false</urgent></d>"

    async def refused(verb: str, target: str, body: bytes | None = None, **headers: str) -> tuple[int, str, str]:
        status, answer_headers, answer = await smart.request(verb, target, body, {**XML_HEADERS, **headers})
        assert answer["success"] is False and answer["errorid"], answer
        return status, answer["errorcode"], answer["message"]

    assert (await refused("POST", create, good, **{"X-API-Key": ""}))[:2] == (401, "AUTH_REQUIRED")
    assert (await refused("POST", create, good, **{"X-API-Key": "fbk_nothing_" + "x" * 43}))[:2] == (401, "AUTH_FAILED")
    status, code, message = await refused("POST", create.partition("?")[0], good)
    assert (status, code) == (400, "INVALID_REQUEST") and "flowId" in message
    assert (await refused("POST", url(CREATE, smart.bus, flowId="no-such-flow"), good))[:2] == (404, "DO_NOT_EXIST")
    status, code, message = await refused("POST", create + "&tags=a", good)
    assert (status, code) == (400, "INVALID_REQUEST") and "tags" in message
    assert (await refused("POST", create, b"<d><customer>c</customer>"))[:2] == (400, "INVALID_REQUEST")
    assert (await refused("POST", create, b'<!DOCTYPE d [<!ENTITY e "x">]><d>&e;</d>'))[:2] == (400, "INVALID_REQUEST")
    status, code, message = await refused("POST", create, good.replace(b"<copies>1", b"<copies>one"))
    assert (status, code) == (422, "INVALID_DATA") and "one" in message
    assert (await refused("POST", create, b"<d>" + b"<x>y</x>" * 200_000 + b"</d>"))[:2] == (413, "TOO_LARGE")
    for template in (PROGRESS, OUTPUT):
        assert (await refused("GET", url(template, smart.bus, executionId="no-such")))[:2] == (404, "DO_NOT_EXIST")
        assert (await refused("GET", url(template, smart.bus, executionId="x") + "?view=definition"))[:2] == (
            400,
            "INVALID_REQUEST",
        )

    # each path answers its own method only
    status, headers, answer = await smart.request("GET", create)
    assert (status, answer["errorcode"], headers["Allow"]) == (405, "METHOD_NOT_SUPPORTED", "POST")
    status, headers, answer = await smart.request("DELETE", url(OUTPUT, smart.bus, executionId="x"))
    assert (status, answer["errorcode"], headers["Allow"]) == (405, "METHOD_NOT_SUPPORTED", "GET")

    # the caller's permissions, as for the bus's own API
    viewer = unique("viewer")
    await admin(
        smart.bus, "CREATE", "auth/user", data={"username": viewer, "password": "a-password-123", "roles": ["viewer"]}
    )
    login = await smart.session.post(
        smart.bus.http_url + "/api/auth/auth/token/", json={"username": viewer, "password": "a-password-123"}
    )
    token = (await login.json())["data"]["token"]
    status, _, answer = await smart.request(
        "POST", create, good, {**XML_HEADERS, "X-API-Key": "", "Flow-Auth-Token": token}
    )
    assert (status, answer["errorcode"]) == (403, "PERMISSION_DENIED")
    assert "Traceback" not in smart.bus.log()


async def test_namespaces_as_for_the_bus(smart: Smart) -> None:
    namespace = unique("ns")
    flow = await smart.native("CREATE", "flows/flow", data={**DOCUMENT, "name": "in-ns"}, namespace=namespace)
    body = b"<d><customer>n</customer><copies>1</copies><urgent>false</urgent></d>"
    status, _, answer = await smart.request("POST", url(CREATE, smart.bus, flowId=flow["id"]), body, XML_HEADERS)
    assert (status, answer["errorcode"]) == (404, "DO_NOT_EXIST")
    status, _, started = await smart.request(
        "POST", url(CREATE, smart.bus, flowId="in-ns"), body, {**XML_HEADERS, "Flow-Request-Namespace": namespace}
    )
    assert (status, started["status"]) == (200, "Running")
    target = url(OUTPUT, smart.bus, executionId=started["id"])
    assert (await smart.request("GET", target))[0] == 404
    status, _, execution = await smart.request("GET", target + f"?namespace={namespace}")
    assert (status, execution["flow"]["displayName"]) == (200, "in-ns")


async def test_openapi_describes_the_paths(smart: Smart) -> None:
    async with smart.session.get(smart.bus.http_url + "/api/openapi.json") as response:
        document = orjson.loads(await response.read())
    validate(document)
    paths = document["paths"]
    assert set(paths["/api/v1/flows/executions"]) == {"post"}
    assert set(paths["/api/v1/flows/executions/{id}/progress"]) == {"parameters", "get"}
    assert set(paths["/api/v1/flows/executions/{id}"]) == {"parameters", "get"}
    statuses = document["components"]["schemas"]["SmartFlowsStatus"]["enum"]
    documented = [
        "Running",
        "Success",
        "Queued",
        "User input",
        "Error",
        "Canceled",
        "Waiting",
        "SelectFlow",
        "Interrupted",
    ]
    assert sorted(statuses) == sorted(documented)
