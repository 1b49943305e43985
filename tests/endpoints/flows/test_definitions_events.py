"""Definitions (validation, names, clone), events (routing, triggers), flow commands and status."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.helpers import DEVICE_APPROVAL, EVENT, EXECUTION, FLOW, approval, settle
from tests.flowbus.helpers import fails, ok, unique


def broken(change: Any) -> dict[str, Any]:
    flow = copy.deepcopy(DEVICE_APPROVAL)
    change(flow)
    return flow


BAD = [
    pytest.param(lambda f: f.pop("startState"), "startState", id="no-start-state"),
    pytest.param(lambda f: f.update(startState="nowhere"), "startState", id="unknown-start-state"),
    pytest.param(
        lambda f: f["states"]["create"]["transitions"][0].update(to="limbo"),
        "states.create.transitions[0].to",
        id="unknown-target",
    ),
    pytest.param(lambda f: f["states"].update(orphan={"action": "end"}), "states.orphan", id="unreachable"),
    pytest.param(
        lambda f: f["states"]["create"].update(action="teleport"), "states.create.action", id="unknown-action"
    ),
    pytest.param(
        lambda f: f["states"]["create"]["data"].update(name="=input.[name"), "states.create.data", id="bad-expression"
    ),
    pytest.param(
        lambda f: f["states"]["approval"]["transitions"][0].update({"if": "=event.(("}),
        "states.approval.transitions[0].if",
        id="bad-if",
    ),
    pytest.param(lambda f: f.update(schedule="61 * * * *"), "schedule", id="bad-cron"),
    pytest.param(lambda f: f.update(schedule="0 2 * * *", timezone="Mars/Olympus"), "timezone", id="bad-timezone"),
    pytest.param(lambda f: f.update(input={"type": "nonsense"}), "input", id="bad-input-schema"),
    pytest.param(
        lambda f: f["states"]["done"].update(transitions=[{"on": "success", "to": "failed"}]),
        "states.done.transitions",
        id="end-with-transitions",
    ),
    pytest.param(
        lambda f: f["states"]["create"].update(transitions=[]), "states.create.transitions", id="no-transitions"
    ),
    pytest.param(lambda f: f["states"]["create"].update(retry={"max": -1}), "states.create.retry.max", id="bad-retry"),
    pytest.param(lambda f: f.update(onCrash="explode"), "onCrash", id="bad-on-crash"),
    pytest.param(lambda f: f.update(name=""), "name", id="no-name"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
async def test_bad_definitions_are_refused_naming_the_fault(ws: ClientConnection, change: Any, field: str) -> None:
    namespace = unique("ns")
    answer = await fails(ws, "INVALID_DATA", "CREATE", FLOW, data=broken(change), namespace=namespace)
    assert answer["field"] == field
    assert await ok(ws, "LIST", FLOW, namespace=namespace) == []


async def test_names_are_unique_in_a_namespace(ws: ClientConnection) -> None:
    namespace = unique("ns")
    first = await ok(ws, "CREATE", FLOW, data=approval("one"), namespace=namespace)
    await fails(ws, "CONFLICT", "CREATE", FLOW, data=approval("one"), namespace=namespace)
    await ok(ws, "CREATE", FLOW, data=approval("one"), namespace=unique("ns"))
    second = await ok(ws, "CREATE", FLOW, data=approval("two"), namespace=namespace)
    await fails(ws, "CONFLICT", "UPDATE", FLOW, objectid=second["id"], data={"name": "one"}, namespace=namespace)
    renamed = await ok(ws, "UPDATE", FLOW, objectid=first["id"], data={"name": "uno"}, namespace=namespace)
    assert renamed["name"] == "uno"
    await ok(ws, "CREATE", FLOW, data=approval("one"), namespace=namespace)
    started = await ok(ws, "RUN", FLOW, objectid="uno", data={"name": "by-name"}, namespace=namespace)
    assert started["flow"]["id"] == first["id"]
    assert (await ok(ws, "OPEN", FLOW, objectid="uno", namespace=namespace))["id"] == first["id"]
    await fails(
        ws, "INVALID_DATA", "UPDATE", FLOW, objectid=first["id"], data={"startState": "nowhere"}, namespace=namespace
    )
    await fails(
        ws, "INVALID_DATA", "UPDATE", FLOW, objectid=first["id"], data={"owner": "someone"}, namespace=namespace
    )
    await ok(ws, "DELETE", FLOW, objectid=first["id"], namespace=namespace)
    await ok(ws, "CREATE", FLOW, data=approval("uno"), namespace=namespace)


async def test_clone(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("original"), namespace=namespace)
    clone = await ok(ws, "RUN", FLOW, objectid=flow["id"], parameters={"operation": "clone"}, namespace=namespace)
    assert clone["id"] != flow["id"]
    assert (clone["name"], clone["disabled"], clone["states"]) == ("original (copy)", True, flow["states"])
    await fails(ws, "CONFLICT", "RUN", FLOW, objectid=clone["id"], data={"name": "x"}, namespace=namespace)


async def test_event_by_context_id_moves_only_that_execution(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("by-context"), namespace=namespace)
    ids = []
    for _ in range(2):
        started = await ok(ws, "RUN", FLOW, objectid=flow["id"], data={"name": "c"}, namespace=namespace)
        await settle(ws, started["id"], namespace)
        ids.append(started["id"])
    answer = await ok(
        ws, "RUN", EVENT, objectid="approve", data={"contextId": ids[1], "input": {"ok": True}}, namespace=namespace
    )
    assert answer == {
        "message": "Event approve has been sent",
        "transitions": [{"contextId": ids[1], "state": "done"}],
        "executions": [],
    }
    assert (await ok(ws, "OPEN", EXECUTION, objectid=ids[0], namespace=namespace))["status"] == "WAITING"
    await fails(ws, "DO_NOT_EXIST", "RUN", EVENT, objectid="approve", data={"contextId": "nobody"}, namespace=namespace)


async def test_event_by_tags_moves_executions_with_all_of_them(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("by-tags"), namespace=namespace)
    ids = {}
    for tags in (["site-a", "core"], ["site-a"], ["site-b", "core"]):
        started = await ok(
            ws, "RUN", FLOW, objectid=flow["id"], data={"name": "t"}, parameters={"tags": tags}, namespace=namespace
        )
        await settle(ws, started["id"], namespace)
        ids[tuple(tags)] = started["id"]
    answer = await ok(
        ws,
        "RUN",
        EVENT,
        objectid="approve",
        data={"tags": ["site-a", "core"], "input": {"ok": True}},
        namespace=namespace,
    )
    assert answer["transitions"] == [{"contextId": ids[("site-a", "core")], "state": "done"}]
    answer = await ok(
        ws, "RUN", EVENT, objectid="approve", data={"tags": ["core"], "input": {"ok": False}}, namespace=namespace
    )
    assert answer["transitions"] == [{"contextId": ids[("site-b", "core")], "state": "failed"}]
    answer = await ok(ws, "RUN", EVENT, objectid="unheard", namespace=namespace)
    assert answer["transitions"] == []


async def test_triggers_start_flows_that_see_the_event(ws: ClientConnection) -> None:
    namespace = unique("ns")
    definition = {
        "name": "triggered",
        "triggers": ["device-added"],
        "startState": "s",
        "states": {"s": {"action": "end", "output": {"seen": "=event.input.name", "event": "=event.name"}}},
    }
    flow = await ok(ws, "CREATE", FLOW, data=definition, namespace=namespace)
    answer = await ok(ws, "RUN", EVENT, objectid="device-added", data={"input": {"name": "sw-9"}}, namespace=namespace)
    assert len(answer["executions"]) == 1
    started = answer["executions"][0]
    assert started["state"] == "s"
    done = await settle(ws, started["contextId"], namespace)
    assert done["output"] == {"seen": "sw-9", "event": "device-added"}

    await ok(ws, "RUN", "flows/command", objectid="stop", data={"flow_ids": [flow["id"]]}, namespace=namespace)
    quiet = await ok(ws, "RUN", EVENT, objectid="device-added", namespace=namespace)
    assert quiet["executions"] == []
    await ok(ws, "UPDATE", FLOW, objectid=flow["id"], data={"disabled": True}, namespace=namespace)
    await ok(ws, "RUN", "flows/command", objectid="start", data={"flow_ids": [flow["id"]]}, namespace=namespace)
    assert (await ok(ws, "RUN", EVENT, objectid="device-added", namespace=namespace))["executions"] == []


async def test_flow_commands_and_status(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flows = [await ok(ws, "CREATE", FLOW, data=approval(f"f{i}"), namespace=namespace) for i in range(2)]
    ids = [f["id"] for f in flows]
    started = await ok(ws, "RUN", FLOW, objectid=ids[0], data={"name": "s"}, namespace=namespace)
    await settle(ws, started["id"], namespace)

    status = await ok(ws, "OPEN", "flows/status", objectid=ids[0], namespace=namespace)
    assert (status["flow_id"], status["name"], status["state"]) == (ids[0], "f0", "running")
    assert status["executions"]["WAITING"] == 1 and status["executions"]["SUCCESS"] == 0

    answer = await ok(ws, "RUN", "flows/command", objectid="pause", data={"flow_ids": ids}, namespace=namespace)
    assert answer == {"status": "Flows paused", "details": [{"flow_id": i, "status": "paused"} for i in ids]}
    await fails(ws, "CONFLICT", "RUN", FLOW, objectid=ids[0], data={"name": "s"}, namespace=namespace)
    answer = await ok(ws, "RUN", "flows/command", objectid="resume", data={"flow_ids": ids}, namespace=namespace)
    assert answer["status"] == "Flows resumed" and answer["details"][0]["status"] == "running"

    answer = await ok(ws, "RUN", "flows/command", objectid="stop", data={"type": 1}, namespace=namespace)
    assert answer["status"] == "Flows stopped" and len(answer["details"]) == 2
    assert (await ok(ws, "OPEN", EXECUTION, objectid=started["id"], namespace=namespace))["status"] == "CANCELED"
    listed = await ok(ws, "LIST", "flows/status", namespace=namespace)
    assert [(s["name"], s["state"], s["executions"]["CANCELED"]) for s in listed] == [
        ("f0", "stopped", 1),
        ("f1", "stopped", 0),
    ]
    answer = await ok(ws, "RUN", "flows/command", objectid="start", data={"flow_ids": [ids[1]]}, namespace=namespace)
    assert answer == {"status": "Flows started", "details": [{"flow_id": ids[1], "status": "running"}]}

    await fails(ws, "INVALID_REQUEST", "RUN", "flows/command", objectid="explode", data={}, namespace=namespace)
    await fails(ws, "INVALID_DATA", "RUN", "flows/command", objectid="stop", data={"type": 7}, namespace=namespace)
    await fails(
        ws,
        "DO_NOT_EXIST",
        "RUN",
        "flows/command",
        objectid="stop",
        data={"flow_ids": [ids[1], "nope"]},
        namespace=namespace,
    )
    assert (await ok(ws, "OPEN", "flows/status", objectid=ids[1], namespace=namespace))["state"] == "running"


async def test_an_event_no_transition_takes_leaves_the_execution_waiting(ws: ClientConnection) -> None:
    namespace = unique("ns")
    definition = {
        "name": "pay-when-enough",
        "startState": "W",
        "states": {
            "W": {
                "action": "wait",
                "event": "pay",
                "transitions": [
                    {"on": "pay", "to": "paid", "if": "=event.input.amount >= `10`"},
                    {"on": "pay", "to": "refunded", "if": "=event.input.refund"},
                ],
            },
            "paid": {"action": "end", "output": "=event.input.amount"},
            "refunded": {"action": "end"},
        },
    }
    flow = await ok(ws, "CREATE", FLOW, data=definition, namespace=namespace)
    started = await ok(ws, "RUN", FLOW, objectid=flow["id"], namespace=namespace)
    waiting = await settle(ws, started["id"], namespace)
    assert waiting["status"] == "WAITING"

    for data in ({"input": {"amount": 3}}, {"contextId": started["id"], "input": {"amount": 5, "refund": False}}):
        answer = await ok(ws, "RUN", EVENT, objectid="pay", data=data, namespace=namespace)
        assert answer["transitions"] == []
        still = await ok(ws, "OPEN", EXECUTION, objectid=started["id"], namespace=namespace)
        assert (still["status"], still["currentState"], still["version"]) == ("WAITING", "W", waiting["version"])
        assert still["error"] is None

    answer = await ok(
        ws,
        "RUN",
        EVENT,
        objectid="pay",
        data={"contextId": started["id"], "input": {"amount": 12}},
        namespace=namespace,
    )
    assert answer["transitions"] == [{"contextId": started["id"], "state": "paid"}]
    done = await settle(ws, started["id"], namespace)
    assert (done["status"], done["output"]) == ("SUCCESS", 12)
