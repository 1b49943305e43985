"""``flows/flow`` writes: ids, clones, names as keys, the bus's timestamps, and flows of exports
and imports that are stored but run nothing here."""

from __future__ import annotations

import re
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, approval, settle
from tests.flowbus.helpers import DEVICE, fails, ok, unique

MILLISECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
EXPORTS_AND_IMPORTS: dict[str, Any] = {
    "name": "Send GitHub Events to Slack",
    "disabled": False,
    "timezone": "America/Los_Angeles",
    "_exportId": "55ea776bb751843c37b7ac6ab0",
    "_importId": "55ea78c546cf5825294aca0b",
    "_integrationId": "58f107a36b3bdd4f87aca76b",
    "skipRetries": False,
}


# -- ids ----------------------------------------------------------------------------------------


def _body(endpoint: str, **fields: Any) -> dict[str, Any]:
    return {**(approval(unique("f")) if endpoint == FLOW else {"name": unique("d")}), **fields}


@pytest.mark.parametrize("endpoint", [FLOW, DEVICE])
@pytest.mark.parametrize("bad", ["a/b c", "", "x" * 129, 5, True, ["a"]])
async def test_ids_follow_one_rule_and_an_empty_id_is_refused(ws: ClientConnection, endpoint: str, bad: Any) -> None:
    namespace = unique("ns")
    answer = await fails(ws, "INVALID_DATA", "CREATE", endpoint, data=_body(endpoint, id=bad), namespace=namespace)
    assert answer["field"] == "id" and "[A-Za-z0-9._:-]" in answer["message"]
    many = [_body(endpoint), _body(endpoint, id=bad)]
    answer = await fails(ws, "INVALID_DATA", "CREATE", endpoint, data=many, namespace=namespace)
    assert answer["field"] == "[1].id"
    assert await ok(ws, "LIST", endpoint, namespace=namespace) == []


@pytest.mark.parametrize("endpoint", [FLOW, DEVICE])
async def test_a_given_id_is_kept_and_none_means_a_fresh_one(ws: ClientConnection, endpoint: str) -> None:
    namespace = unique("ns")
    given = await ok(ws, "CREATE", endpoint, data=_body(endpoint, id="Sw-1.lab:a_b-c"), namespace=namespace)
    assert given["id"] == "Sw-1.lab:a_b-c"
    fresh = await ok(ws, "CREATE", endpoint, data=_body(endpoint, id=None), namespace=namespace)
    assert re.fullmatch(r"[0-9a-f-]{36}", fresh["id"])


async def test_flow_id_is_another_name_of_the_id(ws: ClientConnection) -> None:
    """flows-config calls a flow's id ``flow_id``: CREATE takes it as the id (it is not stored apart)."""
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data={**approval("aliased"), "flow_id": "flow1"}, namespace=namespace)
    assert flow["id"] == "flow1" and "flow_id" not in flow
    same = await ok(ws, "CREATE", FLOW, data={**approval("both"), "id": "f2", "flow_id": "f2"}, namespace=namespace)
    assert same["id"] == "f2"
    answer = await fails(
        ws, "INVALID_DATA", "CREATE", FLOW, data={**approval("two"), "id": "a", "flow_id": "b"}, namespace=namespace
    )
    assert answer["field"] == "flow_id"
    answer = await fails(
        ws, "INVALID_DATA", "CREATE", FLOW, data={**approval("bad"), "flow_id": "a b"}, namespace=namespace
    )
    assert answer["field"] == "flow_id"
    changed = await ok(
        ws, "UPDATE", FLOW, objectid="flow1", data={"flow_id": "zzz", "description": "d"}, namespace=namespace
    )
    assert changed["id"] == "flow1" and "flow_id" not in changed


# -- names as keys ------------------------------------------------------------------------------


async def test_update_and_delete_take_the_name_as_open_and_run_do(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("by-name"), namespace=namespace)
    assert (await ok(ws, "OPEN", FLOW, objectid="by-name", namespace=namespace))["id"] == flow["id"]
    changed = await ok(ws, "UPDATE", FLOW, objectid="by-name", data={"description": "named"}, namespace=namespace)
    assert (changed["id"], changed["description"], changed["version"]) == (flow["id"], "named", 2)
    renamed = await ok(ws, "UPDATE", FLOW, objectid="by-name", data={"name": "renamed"}, namespace=namespace)
    assert renamed["name"] == "renamed"
    await fails(ws, "DO_NOT_EXIST", "UPDATE", FLOW, objectid="by-name", data={"description": "x"}, namespace=namespace)
    await fails(ws, "CONFLICT", "DELETE", FLOW, objectid="renamed", parameters={"version": 1}, namespace=namespace)
    deleted = await ok(ws, "DELETE", FLOW, objectid="renamed", namespace=namespace)
    assert deleted["id"] == flow["id"]
    await fails(ws, "DO_NOT_EXIST", "OPEN", FLOW, objectid=flow["id"], namespace=namespace)
    await fails(ws, "DO_NOT_EXIST", "DELETE", FLOW, objectid="renamed", namespace=namespace)
    await ok(ws, "CREATE", FLOW, data=approval("renamed"), namespace=namespace)  # the name is free again


async def test_a_flow_sent_back_as_opened_updates(ws: ClientConnection) -> None:
    """owner and state are the bus's: sent back unchanged they are ignored, changed they are refused."""
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("round-trip"), namespace=namespace)
    opened = await ok(ws, "OPEN", FLOW, objectid=flow["id"], namespace=namespace)
    changed = await ok(
        ws, "UPDATE", FLOW, objectid=flow["id"], data={**opened, "description": "again"}, namespace=namespace
    )
    assert (changed["description"], changed["owner"], changed["state"]) == ("again", "admin", "running")
    for field, value in (("owner", "someone"), ("state", "stopped")):
        answer = await fails(
            ws, "INVALID_DATA", "UPDATE", FLOW, objectid=flow["id"], data={**opened, field: value}, namespace=namespace
        )
        assert answer["field"] == field


# -- clones -------------------------------------------------------------------------------------


async def test_a_flow_is_cloned_as_often_as_asked_under_unique_names(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("original"), namespace=namespace)
    clone = {"operation": "clone"}
    names = [
        (await ok(ws, "RUN", FLOW, objectid=flow["id"], parameters=clone, namespace=namespace))["name"]
        for _ in range(3)
    ]
    assert names == ["original (copy)", "original (copy 2)", "original (copy 3)"]
    await ok(ws, "DELETE", FLOW, objectid="original (copy 2)", namespace=namespace)
    again = await ok(ws, "RUN", FLOW, objectid="original", parameters=clone, namespace=namespace)
    assert again["name"] == "original (copy 2)"
    named = await ok(ws, "RUN", FLOW, objectid="original", parameters=clone, data={"name": "mine"}, namespace=namespace)
    assert (named["name"], named["disabled"], named["states"]) == ("mine", True, flow["states"])
    answer = await fails(
        ws, "CONFLICT", "RUN", FLOW, objectid="original", parameters=clone, data={"name": "mine"}, namespace=namespace
    )
    assert "mine" in answer["message"]
    await fails(
        ws, "INVALID_DATA", "RUN", FLOW, objectid="original", parameters=clone, data={"name": ""}, namespace=namespace
    )
    listed = await ok(ws, "LIST", FLOW, namespace=namespace)
    assert sorted(f["name"] for f in listed) == sorted(
        ["original", "original (copy)", "original (copy 2)", "original (copy 3)", "mine"]
    )


async def test_a_clone_of_a_flow_created_with_flow_id_gets_an_id_of_its_own(ws: ClientConnection) -> None:
    namespace = unique("ns")
    await ok(ws, "CREATE", FLOW, data={**approval("cfg"), "flow_id": "cfg-1"}, namespace=namespace)
    clone = await ok(ws, "RUN", FLOW, objectid="cfg-1", parameters={"operation": "clone"}, namespace=namespace)
    assert clone["id"] != "cfg-1" and clone["name"] == "cfg (copy)"


# -- timestamps and fields kept as given ------------------------------------------------------------


async def test_flows_carry_created_at_and_last_modified_in_milliseconds(ws: ClientConnection) -> None:
    namespace = unique("ns")
    data = {**approval("stamped"), "createdAt": "2017-06-19T21:27:09.900Z", "lastModified": "x"}
    flow = await ok(ws, "CREATE", FLOW, data=data, namespace=namespace)
    assert MILLISECONDS.fullmatch(flow["createdAt"]) and flow["lastModified"] == flow["createdAt"]
    assert flow["createdAt"][:19] == flow["created"][:19]
    changed = await ok(
        ws, "UPDATE", FLOW, objectid=flow["id"], data={"description": "d", "createdAt": "y"}, namespace=namespace
    )
    assert changed["createdAt"] == flow["createdAt"]
    assert MILLISECONDS.fullmatch(changed["lastModified"]) and changed["lastModified"] >= flow["lastModified"]
    await ok(ws, "RUN", "flows/command", objectid="pause", data={"flow_ids": [flow["id"]]}, namespace=namespace)
    paused = await ok(ws, "OPEN", FLOW, objectid=flow["id"], namespace=namespace)
    assert paused["lastModified"] >= changed["lastModified"] and paused["createdAt"] == flow["createdAt"]


async def test_a_flow_of_exports_and_imports_is_kept_verbatim_and_runs_nothing(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=EXPORTS_AND_IMPORTS, namespace=namespace)
    assert {k: flow[k] for k in EXPORTS_AND_IMPORTS} == EXPORTS_AND_IMPORTS
    answer = await fails(ws, "CONFLICT", "RUN", FLOW, objectid=flow["id"], data={}, namespace=namespace)
    assert "55ea776bb751843c37b7ac6ab0" in answer["message"] and "states" in answer["message"]
    status = await ok(ws, "OPEN", "flows/status", objectid=flow["id"], namespace=namespace)
    assert status["state"] == "running" and sum(status["executions"].values()) == 0
    # states make it runnable; without exports or imports, states are required as ever
    runnable = {**approval("x")}
    changed = await ok(
        ws,
        "UPDATE",
        FLOW,
        objectid=flow["id"],
        data={"startState": runnable["startState"], "states": runnable["states"]},
        namespace=namespace,
    )
    started = await ok(ws, "RUN", FLOW, objectid=changed["id"], data={"name": "n"}, namespace=namespace)
    assert started["status"] in ("RUNNING", "QUEUED", "WAITING")
    answer = await fails(ws, "INVALID_DATA", "CREATE", FLOW, data={"name": "bare"}, namespace=namespace)
    assert answer["field"] == "states"
    half = {**EXPORTS_AND_IMPORTS, "name": "half", "startState": "a"}
    answer = await fails(ws, "INVALID_DATA", "CREATE", FLOW, data=half, namespace=namespace)
    assert answer["field"] == "states"


async def test_schedules_and_triggers_of_a_flow_without_states_start_nothing(
    clocked: Clocked, cws: ClientConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """The flow of exports and imports is not armed, and an event it is triggered by passes it by;
    the flow with states beside it, on the same schedule and trigger, starts each time."""
    import asyncio

    timing = {"schedule": "* * * * *", "triggers": ["ping"]}
    idle = await ok(cws, "CREATE", FLOW, data={**EXPORTS_AND_IMPORTS, **timing})
    states = {
        "startState": "go",
        "states": {
            "go": {"action": "set", "vars": {}, "transitions": [{"on": "success", "to": "end"}]},
            "end": {"action": "end"},
        },
    }
    busy = await ok(cws, "CREATE", FLOW, data={"name": "busy", **timing, **states})
    sent = await ok(cws, "RUN", "flows/event", objectid="ping", data={})
    assert [e["contextId"] for e in sent["executions"]] != [] and len(sent["executions"]) == 1
    clocked.clock.advance(60)
    for _ in range(500):
        if len(await ok(cws, "LIST", EXECUTION, parameters={"flow": busy["id"]})) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(await ok(cws, "LIST", EXECUTION, parameters={"flow": busy["id"]})) == 2
    assert await ok(cws, "LIST", EXECUTION, parameters={"flow": idle["id"]}) == []
    assert "could not start" not in caplog.text  # never armed: nothing tried to start it


async def test_choosing_a_flow_without_states_is_refused_and_the_choice_stays_open(ws: ClientConnection) -> None:
    namespace = unique("ns")
    await ok(ws, "CREATE", FLOW, data=EXPORTS_AND_IMPORTS, namespace=namespace)
    child = {"name": "child", "startState": "s", "states": {"s": {"action": "end", "output": "=input"}}}
    await ok(ws, "CREATE", FLOW, data=child, namespace=namespace)
    chooser = {
        "name": "chooser",
        "startState": "pick",
        "states": {
            "pick": {
                "action": "choose",
                "flows": [EXPORTS_AND_IMPORTS["name"], "child"],
                "result": "picked",
                "transitions": [{"on": "success", "to": "done"}],
            },
            "done": {"action": "end", "output": "=vars.picked"},
        },
    }
    await ok(ws, "CREATE", FLOW, data=chooser, namespace=namespace)
    started = await ok(ws, "RUN", FLOW, objectid="chooser", namespace=namespace)
    waiting = await settle(ws, started["id"], namespace)
    assert waiting["status"] == "SELECT_FLOW"
    choice = {"operation": "input"}
    answer = await fails(
        ws,
        "CONFLICT",
        "RUN",
        EXECUTION,
        objectid=waiting["id"],
        parameters=choice,
        data={"flow": EXPORTS_AND_IMPORTS["name"]},
        namespace=namespace,
    )
    assert "no states" in answer["message"]
    assert (await ok(ws, "OPEN", EXECUTION, objectid=waiting["id"], namespace=namespace))["status"] == "SELECT_FLOW"
    await ok(
        ws,
        "RUN",
        EXECUTION,
        objectid=waiting["id"],
        parameters=choice,
        data={"flow": "child", "input": 3},
        namespace=namespace,
    )
    done = await settle(ws, waiting["id"], namespace, until=("SUCCESS", "ERROR"))
    assert (done["status"], done["output"]) == ("SUCCESS", 3)
