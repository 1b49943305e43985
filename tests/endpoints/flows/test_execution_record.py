"""What an execution's record tells besides its state: the stages it ran, who changed it last,
the form a USER_INPUT state shows, and input that came from XML."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, approval, settle
from tests.endpoints.flows.test_transports import http
from tests.flowbus.helpers import fails, ok, unique
from tests.support import rpc

MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
"""The times of a flow's record: to the millisecond."""
COUNTED: dict[str, Any] = {
    "name": "counted",
    "startState": "ask",
    "input": {
        "type": "object",
        "required": ["count", "urgent"],
        "properties": {"count": {"type": "integer"}, "urgent": {"type": "boolean"}, "who": {"type": "string"}},
    },
    "states": {
        "ask": {
            "action": "input",
            "message": "Confirm the count",
            "schema": {
                "type": "object",
                "required": ["confirmed"],
                "properties": {"confirmed": {"type": "integer"}},
            },
            "model": {"confirmed": "=input.count"},
            "form": ["confirmed", {"type": "submit", "title": "OK"}],
            "result": "answer",
            "transitions": [{"on": "success", "to": "again", "if": "=vars.answer.confirmed == input.count"}],
        },
        "again": {"action": "input", "schema": {"type": "object"}, "transitions": [{"on": "success", "to": "done"}]},
        "done": {"action": "end", "output": {"count": "=vars.answer.confirmed"}},
    },
}


async def test_stages_are_the_states_entered_in_order(cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=approval("staged"), namespace=namespace)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "s"}, namespace=namespace)
    waiting = await settle(cws, started["id"], namespace)
    stages = waiting["stages"]
    assert [(s["name"], s["message"]) for s in stages] == [
        ("create", "Creating the device"),
        ("approval", "Running approval"),
    ]
    assert MOMENT.fullmatch(stages[0]["ended"]) and MOMENT.fullmatch(stages[1]["started"])
    assert stages[1]["ended"] is None  # it waits there
    await ok(
        cws, "RUN", "flows/event", objectid="approve", data={"input": {"ok": True, "by": "b"}}, namespace=namespace
    )
    done = await settle(cws, started["id"], namespace)
    assert [s["name"] for s in done["stages"]] == ["create", "approval", "done"]
    assert all(s["ended"] is not None for s in done["stages"])


async def test_modified_by_is_who_made_the_latest_change(clocked: Clocked, cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=approval("modified"), namespace=namespace)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "m"}, namespace=namespace)
    record = await settle(cws, started["id"], namespace)
    assert (record["owner"], record["modifiedBy"]) == ("admin", "admin")
    role = {"id": unique("tagger"), "rules": [{"endpoints": "flows/*", "methods": ["OPEN", "UPDATE"]}]}
    await ok(cws, "CREATE", "auth/role", data=role)
    user = unique("user")
    await ok(cws, "CREATE", "auth/user", data={"username": user, "password": "a-password-1", "roles": [role["id"]]})
    async with clocked.connect() as anonymous:
        login = await rpc(
            anonymous,
            {"method": "CREATE", "endpoint": "auth/token", "data": {"username": user, "password": "a-password-1"}},
        )
    async with clocked.connect(login["data"]["token"]) as theirs:
        tagged = await ok(
            theirs, "UPDATE", EXECUTION, objectid=record["id"], data={"addTags": ["t"]}, namespace=namespace
        )
        assert (tagged["owner"], tagged["modifiedBy"]) == ("admin", user)
        paused = await ok(
            theirs, "UPDATE", EXECUTION, objectid=record["id"], data={"command": "pause"}, namespace=namespace
        )
        assert paused["modifiedBy"] == user
    resumed = await ok(cws, "UPDATE", EXECUTION, objectid=record["id"], data={"command": "resume"}, namespace=namespace)
    assert resumed["modifiedBy"] == "admin"


async def test_a_user_input_state_shows_its_form(cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=COUNTED, namespace=namespace)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"count": 3, "urgent": False}, namespace=namespace)
    await settle(cws, started["id"], namespace)
    progress = await ok(
        cws, "OPEN", EXECUTION, objectid=started["id"], parameters={"view": "progress"}, namespace=namespace
    )
    assert progress["status"] == "USER_INPUT"
    assert progress["schema"] == COUNTED["states"]["ask"]["schema"]
    assert progress["model"] == {"confirmed": 3}
    assert progress["form"] == COUNTED["states"]["ask"]["form"]
    context = await ok(cws, "OPEN", EXECUTION, objectid=started["id"], namespace=namespace)
    assert (context["model"], context["form"]) == (progress["model"], progress["form"])
    answered = await ok(
        cws,
        "RUN",
        EXECUTION,
        objectid=started["id"],
        data={"confirmed": 3},
        parameters={"operation": "input"},
        namespace=namespace,
    )
    assert answered["currentState"] == "again"
    second = await settle(cws, started["id"], namespace)
    assert (second["status"], second["model"], second["form"]) == ("USER_INPUT", {}, ["*"])  # the defaults
    await ok(
        cws, "RUN", EXECUTION, objectid=started["id"], data={}, parameters={"operation": "input"}, namespace=namespace
    )
    done = await settle(cws, started["id"], namespace)
    assert done["status"] == "SUCCESS" and not {"schema", "model", "form"} & set(done)
    bad = {
        **COUNTED,
        "name": "bad-form",
        "states": {**COUNTED["states"], "again": {**COUNTED["states"]["again"], "form": {}}},
    }
    answer = await fails(cws, "INVALID_DATA", "CREATE", FLOW, data=bad, namespace=namespace)
    assert answer["field"] == "states.again.form"


async def test_input_from_xml_is_read_by_the_schema(clocked: Clocked, cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=COUNTED, namespace=namespace)
    text = {"count": "3", "urgent": "true", "who": "12"}
    await fails(cws, "INVALID_DATA", "RUN", FLOW, objectid=flow["id"], data=text, namespace=namespace)
    await fails(
        cws,
        "INVALID_REQUEST",
        "RUN",
        FLOW,
        objectid=flow["id"],
        data=text,
        parameters={"dataType": "YAML"},
        namespace=namespace,
    )
    answer = await fails(
        cws,
        "INVALID_DATA",
        "RUN",
        FLOW,
        objectid=flow["id"],
        data={**text, "count": "three"},
        parameters={"dataType": "XML"},
        namespace=namespace,
    )
    assert "three" in answer["message"]
    started = await ok(
        cws, "RUN", FLOW, objectid=flow["id"], data=text, parameters={"dataType": "XML"}, namespace=namespace
    )
    record = await settle(cws, started["id"], namespace)
    assert record["input"] == {"count": 3, "urgent": True, "who": "12"}
    # over HTTP, an XML body; the answer of a USER_INPUT state too
    body = b'<?xml version="1.0" encoding="utf-8"?><answer><confirmed>3</confirmed></answer>'
    headers = {"Content-Type": 'application/xml; charset="utf-8"', "Flow-Request-Method": "RUN"}
    path = f"/api/flows/flows/execution/{record['id']}?operation=input&dataType=XML&namespace={namespace}"
    status, answered = await asyncio.to_thread(http, clocked, "POST", path, body, headers)
    assert (status, answered["data"]["currentState"]) == (200, "again"), answered
    body = b"<data><count>4</count><urgent>0</urgent></data>"
    path = f"/api/flows/flows/flow/{flow['id']}?dataType=XML&namespace={namespace}"
    status, run = await asyncio.to_thread(http, clocked, "POST", path, body, headers)
    assert status == 200, run
    assert (await settle(cws, run["data"]["id"], namespace))["input"] == {"count": 4, "urgent": False}
