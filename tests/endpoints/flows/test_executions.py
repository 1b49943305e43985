"""Executions: commands, tags, filters, views, the queue, and acting as the user who started them."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, approval, settle
from tests.flowbus.helpers import fails, ok, unique
from tests.support import rpc


def gated(name: str, gate: str) -> dict[str, Any]:
    """A flow whose first state calls gate ``gate`` (it runs until the test opens it), then ends."""
    return {
        "name": name,
        "startState": "held",
        "states": {
            "held": {
                "action": "call",
                "endpoint": "testflows/gate",
                "method": "RUN",
                "objectid": gate,
                "transitions": [{"on": "success", "to": "after"}],
            },
            "after": {"action": "set", "vars": {"after": True}, "transitions": [{"on": "success", "to": "end"}]},
            "end": {"action": "end"},
        },
    }


async def start_held(clocked: Clocked, ws: ClientConnection, name: str) -> tuple[str, dict[str, Any]]:
    gate = unique("gate")
    flow = await ok(ws, "CREATE", FLOW, data=gated(name, gate))
    started = await ok(ws, "RUN", FLOW, objectid=flow["id"])
    await asyncio.wait_for(clocked.gates.arrived(gate).wait(), 30)
    return gate, started


async def test_pause_at_the_next_state_boundary_then_resume(clocked: Clocked, cws: ClientConnection) -> None:
    gate, started = await start_held(clocked, cws, "pause-me")
    answer = await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "pause"})
    assert answer["status"] == "RUNNING"
    clocked.gates.gate(gate).set()
    paused = await settle(cws, started["id"])
    assert (paused["status"], paused["currentState"]) == ("PAUSED", "after")
    assert "after" not in paused["vars"]
    await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "resume"})
    done = await settle(cws, started["id"])
    assert (done["status"], done["vars"]["after"]) == ("SUCCESS", True)


async def test_soft_stop_finishes_the_state_then_cancels(clocked: Clocked, cws: ClientConnection) -> None:
    gate, started = await start_held(clocked, cws, "soft-stop")
    await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "stop", "type": 0})
    clocked.gates.gate(gate).set()
    stopped = await settle(cws, started["id"])
    assert (stopped["status"], stopped["currentState"]) == ("CANCELED", "after")
    assert [c["name"] for c in stopped["stateContexts"]] == ["held"]


async def test_hard_stop_cancels_now(clocked: Clocked, cws: ClientConnection) -> None:
    gate, started = await start_held(clocked, cws, "hard-stop")
    stopped = await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "stop", "type": 1})
    assert (stopped["status"], stopped["currentState"]) == ("CANCELED", "held")
    clocked.gates.gate(gate).set()
    await asyncio.sleep(0.05)
    record = await ok(cws, "OPEN", EXECUTION, objectid=started["id"])
    assert (record["status"], record["stateContexts"], record["version"]) == ("CANCELED", [], stopped["version"])


async def test_commands_that_do_not_fit_the_status_change_nothing(cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data={"name": "quick", "startState": "e", "states": {"e": {"action": "end"}}})
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    done = await settle(cws, started["id"])
    for command in ("resume", "pause", "stop"):
        await fails(cws, "CONFLICT", "UPDATE", EXECUTION, objectid=done["id"], data={"command": command})
    await fails(cws, "CONFLICT", "DELETE", EXECUTION, objectid=done["id"])
    after = await ok(cws, "OPEN", EXECUTION, objectid=done["id"])
    assert (after["status"], after["version"]) == ("SUCCESS", done["version"])
    await fails(cws, "INVALID_DATA", "UPDATE", EXECUTION, objectid=done["id"], data={"command": "explode"})
    await fails(cws, "INVALID_DATA", "UPDATE", EXECUTION, objectid=done["id"], data={"command": "stop", "type": 2})
    await fails(cws, "INVALID_DATA", "UPDATE", EXECUTION, objectid=done["id"], data={})
    await fails(cws, "DO_NOT_EXIST", "UPDATE", EXECUTION, objectid="no-such", data={"command": "stop"})


async def test_pause_and_resume_a_waiting_execution(cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=approval("pause-waiting"), namespace=namespace)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "d"}, namespace=namespace)
    await settle(cws, started["id"], namespace)
    paused = await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "pause"}, namespace=namespace)
    assert paused["status"] == "PAUSED"
    ignored = await ok(cws, "RUN", "flows/event", objectid="approve", data={"input": {"ok": True}}, namespace=namespace)
    assert ignored["transitions"] == []
    resumed = await ok(
        cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "resume"}, namespace=namespace
    )
    assert resumed["status"] == "WAITING"
    moved = await ok(cws, "RUN", "flows/event", objectid="approve", data={"input": {"ok": True}}, namespace=namespace)
    assert moved["transitions"] == [{"contextId": started["id"], "state": "done"}]


async def test_delete_terminates_and_keeps_the_record(cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=approval("delete-me"), namespace=namespace)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "d"}, namespace=namespace)
    await settle(cws, started["id"], namespace)
    deleted = await ok(cws, "DELETE", EXECUTION, objectid=started["id"], namespace=namespace)
    assert deleted["status"] == "CANCELED"
    kept = await ok(cws, "OPEN", EXECUTION, objectid=started["id"], namespace=namespace)
    assert kept["status"] == "CANCELED"


async def test_tags_and_list_filters(cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=approval("tagged"), namespace=namespace)
    ids = []
    for tags in (["a", "b"], "a,c", ["b"]):
        started = await ok(
            cws, "RUN", FLOW, objectid=flow["id"], data={"name": "t"}, parameters={"tags": tags}, namespace=namespace
        )
        ids.append(started["id"])
        await settle(cws, started["id"], namespace)

    async def listed(**parameters: Any) -> list[str]:
        found = await ok(cws, "LIST", EXECUTION, parameters=parameters, namespace=namespace)
        return sorted(e["id"] for e in found)

    assert await listed(tag=["a"]) == sorted(ids[:2])
    assert await listed(tag=["a", "b"]) == [ids[0]]
    assert await listed(tag="a,c") == [ids[1]]
    assert await listed(flow=flow["id"]) == sorted(ids)
    assert await listed(flowName="tagged", status="WAITING", currentState="approval", startState="create") == sorted(
        ids
    )
    assert await listed(status="SUCCESS") == []
    assert len(await listed(limit=2)) == 2
    assert len(await listed(limit=2, page=1)) == 1
    await fails(cws, "INVALID_REQUEST", "LIST", EXECUTION, parameters={"status": "NAPPING"}, namespace=namespace)

    tagged = await ok(cws, "UPDATE", EXECUTION, objectid=ids[2], data={"addTags": ["x", "y"]}, namespace=namespace)
    assert tagged["tags"] == ["b", "x", "y"]
    untagged = await ok(cws, "UPDATE", EXECUTION, objectid=ids[2], data={"removeTags": ["b", "y"]}, namespace=namespace)
    assert untagged["tags"] == ["x"]


async def test_open_views(cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=approval("views"), namespace=namespace)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "v"}, namespace=namespace)
    context = await settle(cws, started["id"], namespace)
    for key in ("id", "flow", "flowName", "status", "currentState", "startState", "waiting", "percentage", "message"):
        assert key in context
    for key in ("input", "output", "vars", "tags", "stateContexts", "executionHistory", "report"):
        assert key in context
    assert context["executionHistory"][0] == {"flowName": "views", "stateName": "create", "stateIndex": 0}
    assert context["report"][0]["state"] == "create" and context["report"][0]["action"] == "call"

    state = await ok(
        cws, "OPEN", EXECUTION, objectid=started["id"], parameters={"state": "create"}, namespace=namespace
    )
    assert state["name"] == "create" and state["output"]["name"] == "v"
    assert set(state) >= {"name", "input", "output", "transitionContexts", "attempts", "started", "ended", "error"}
    await fails(
        cws,
        "DO_NOT_EXIST",
        "OPEN",
        EXECUTION,
        objectid=started["id"],
        parameters={"state": "done"},
        namespace=namespace,
    )

    progress = await ok(
        cws, "OPEN", EXECUTION, objectid=started["id"], parameters={"view": "progress"}, namespace=namespace
    )
    assert set(progress) >= {"id", "status", "percentage", "message", "flow"}

    changed = approval("views")
    changed["states"]["done"]["output"] = {"changed": True}
    await ok(cws, "UPDATE", FLOW, objectid=flow["id"], data=changed, namespace=namespace)
    kept = await ok(
        cws, "OPEN", EXECUTION, objectid=started["id"], parameters={"view": "definition"}, namespace=namespace
    )
    assert kept["states"]["done"]["output"] == {"id": "=vars.device.id", "by": "=event.input.by"}
    await ok(
        cws, "RUN", "flows/event", objectid="approve", data={"input": {"ok": True, "by": "z"}}, namespace=namespace
    )
    done = await settle(cws, started["id"], namespace)
    assert done["output"]["by"] == "z"


async def test_queue_bounds_running_executions(clocked: Clocked, cws: ClientConnection) -> None:
    gate = unique("gate")
    flow = await ok(cws, "CREATE", FLOW, data=gated("queued", gate))
    started = [await ok(cws, "RUN", FLOW, objectid=flow["id"]) for _ in range(6)]
    assert [s["status"] for s in started] == ["RUNNING"] * 4 + ["QUEUED"] * 2
    queue = await ok(cws, "LIST", "scheduler/queue")
    assert [q["id"] for q in queue] == [s["id"] for s in started]
    canceled = await ok(cws, "DELETE", "scheduler/queue", objectid=started[5]["id"])
    assert canceled["status"] == "CANCELED"
    clocked.gates.gate(gate).set()
    ends = [await settle(cws, s["id"]) for s in started]
    assert [e["status"] for e in ends] == ["SUCCESS"] * 5 + ["CANCELED"]
    assert await ok(cws, "LIST", "scheduler/queue") == []


async def test_wait_answers_when_the_execution_settles(cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=approval("waited"))
    answer = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "w"}, parameters={"wait": True})
    assert (answer["status"], answer["currentState"]) == ("WAITING", "approval")


async def test_bad_runs_start_nothing(cws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(cws, "CREATE", FLOW, data=approval("bad-runs"), namespace=namespace)
    answer = await fails(cws, "INVALID_DATA", "RUN", FLOW, objectid=flow["id"], data={"nom": 1}, namespace=namespace)
    assert "name" in answer["message"]
    await fails(
        cws,
        "INVALID_DATA",
        "RUN",
        FLOW,
        objectid=flow["id"],
        data={"name": "x"},
        parameters={"startState": "nowhere"},
        namespace=namespace,
    )
    await fails(cws, "DO_NOT_EXIST", "RUN", FLOW, objectid="no-such-flow", data={"name": "x"}, namespace=namespace)
    await fails(
        cws, "INVALID_REQUEST", "RUN", FLOW, objectid=flow["id"], parameters={"operation": "dance"}, namespace=namespace
    )
    assert await ok(cws, "LIST", EXECUTION, namespace=namespace) == []


async def test_a_flow_acts_as_the_user_who_started_it(clocked: Clocked, cws: ClientConnection) -> None:
    role = {"id": "flow-runner", "rules": [{"endpoints": "flows/*", "methods": ["LIST", "OPEN", "CREATE", "RUN"]}]}
    await ok(cws, "CREATE", "auth/role", data=role)
    await ok(
        cws,
        "CREATE",
        "auth/user",
        data={"username": "runner", "password": "runner-password-1", "roles": ["flow-runner"]},
    )
    flow = await ok(cws, "CREATE", FLOW, data=approval("as-the-runner"))
    async with clocked.connect() as anonymous:
        login = await rpc(
            anonymous,
            {
                "method": "CREATE",
                "endpoint": "auth/token",
                "data": {"username": "runner", "password": "runner-password-1"},
            },
        )
    async with clocked.connect(login["data"]["token"]) as runner:
        started = await ok(runner, "RUN", FLOW, objectid=flow["id"], data={"name": "not-allowed"})
        done = await settle(runner, started["id"])
    assert (done["status"], done["currentState"]) == ("ERROR", "failed")
    create = next(c for c in done["stateContexts"] if c["name"] == "create")
    assert create["error"].startswith("PERMISSION_DENIED")
    assert await ok(cws, "LIST", "inventory/device", parameters={"name": "not-allowed"}) == []


async def test_namespaces_keep_executions_apart(cws: ClientConnection) -> None:
    one, two = unique("ns"), unique("ns")
    for namespace in (one, two):
        flow = await ok(cws, "CREATE", FLOW, data=approval("same-name"), namespace=namespace)
        started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "n"}, namespace=namespace)
        await settle(cws, started["id"], namespace)
    moved = await ok(cws, "RUN", "flows/event", objectid="approve", data={"input": {"ok": True}}, namespace=one)
    assert len(moved["transitions"]) == 1
    waiting = await ok(cws, "LIST", EXECUTION, parameters={"status": "WAITING"}, namespace=two)
    assert len(waiting) == 1


async def test_a_paused_queued_execution_waits_its_resume(clocked: Clocked, cws: ClientConnection) -> None:
    gate = unique("gate")
    flow = await ok(cws, "CREATE", FLOW, data=gated("queued-pause", gate))
    started = [await ok(cws, "RUN", FLOW, objectid=flow["id"]) for _ in range(5)]
    assert started[4]["status"] == "QUEUED"
    paused = await ok(cws, "UPDATE", EXECUTION, objectid=started[4]["id"], data={"command": "pause"})
    assert paused["status"] == "PAUSED"
    clocked.gates.gate(gate).set()
    assert [(await settle(cws, s["id"]))["status"] for s in started[:4]] == ["SUCCESS"] * 4
    assert (await ok(cws, "OPEN", EXECUTION, objectid=started[4]["id"]))["status"] == "PAUSED"
    resumed = await ok(cws, "UPDATE", EXECUTION, objectid=started[4]["id"], data={"command": "resume"})
    assert resumed["status"] == "QUEUED"
    assert (await settle(cws, started[4]["id"]))["status"] == "SUCCESS"


def gates_then_wait(name: str, gates: list[str]) -> dict[str, Any]:
    """A flow that calls each gate of ``gates`` in turn (each runs until the test opens it), then
    waits for the event ``go`` and ends with its input."""
    names = [f"gate{n}" for n in range(len(gates))]
    states: dict[str, Any] = {
        state: {
            "action": "call",
            "endpoint": "testflows/gate",
            "method": "RUN",
            "objectid": gate,
            "transitions": [{"on": "success", "to": following}],
        }
        for state, gate, following in zip(names, gates, [*names[1:], "wait"][: len(names)], strict=True)
    }
    states["wait"] = {"action": "wait", "event": "go", "transitions": [{"on": "go", "to": "end"}]}
    states["end"] = {"action": "end", "output": "=event.input"}
    return {"name": name, "startState": names[0] if names else "wait", "states": states}


async def send_go(ws: ClientConnection, execution: str, value: Any) -> dict[str, Any]:
    answer: dict[str, Any] = await ok(
        ws, "RUN", "flows/event", objectid="go", data={"contextId": execution, "input": value}
    )
    return answer


async def test_an_event_for_a_paused_execution_is_delivered_when_it_waits(
    clocked: Clocked, cws: ClientConnection
) -> None:
    gate = unique("gate")
    flow = await ok(cws, "CREATE", FLOW, data=gates_then_wait(unique("paused-event"), [gate]))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    await asyncio.wait_for(clocked.gates.arrived(gate).wait(), 30)
    await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "pause"})
    clocked.gates.gate(gate).set()
    paused = await settle(cws, started["id"])
    assert (paused["status"], paused["currentState"]) == ("PAUSED", "wait")

    answer = await send_go(cws, started["id"], 1)
    assert answer["transitions"] == []
    assert answer["queued"] == [{"contextId": started["id"], "status": "PAUSED"}]
    kept = await ok(cws, "OPEN", EXECUTION, objectid=started["id"])
    assert [(e["name"], e["input"]) for e in kept["queuedEvents"]] == [("go", 1)]

    await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "resume"})
    done = await settle(cws, started["id"], until=("SUCCESS", "ERROR"))
    assert (done["status"], done["output"], done["queuedEvents"]) == ("SUCCESS", 1, [])
    late = await send_go(cws, started["id"], 2)
    assert (late["transitions"], "queued" in late) == ([], False)


async def test_an_event_sent_while_resuming_is_delivered_when_it_waits(clocked: Clocked, cws: ClientConnection) -> None:
    first, second = unique("gate"), unique("gate")
    flow = await ok(cws, "CREATE", FLOW, data=gates_then_wait(unique("resuming-event"), [first, second]))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    await asyncio.wait_for(clocked.gates.arrived(first).wait(), 30)
    await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "pause"})
    clocked.gates.gate(first).set()
    assert (await settle(cws, started["id"]))["status"] == "PAUSED"
    resumed = await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "resume"})
    assert resumed["status"] == "RUNNING"
    await asyncio.wait_for(clocked.gates.arrived(second).wait(), 30)  # resumed, not yet at its wait

    answer = await send_go(cws, started["id"], "early")
    assert answer["transitions"] == []
    assert answer["queued"] == [{"contextId": started["id"], "status": "RUNNING"}]
    clocked.gates.gate(second).set()
    done = await settle(cws, started["id"], until=("SUCCESS", "ERROR"))
    assert (done["status"], done["output"]) == ("SUCCESS", "early")


async def test_an_event_for_an_execution_paused_while_waiting_is_delivered_on_resume(cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=gates_then_wait(unique("waiting-paused"), []))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    assert (await settle(cws, started["id"]))["status"] == "WAITING"
    await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "pause"})
    answer = await send_go(cws, started["id"], "kept")
    assert answer["queued"] == [{"contextId": started["id"], "status": "PAUSED"}]
    resumed = await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "resume"})
    assert resumed["status"] == "WAITING"
    done = await settle(cws, started["id"], until=("SUCCESS", "ERROR"))
    assert (done["status"], done["output"]) == ("SUCCESS", "kept")


async def test_an_event_for_a_running_execution_never_paused_is_not_queued(
    clocked: Clocked, cws: ClientConnection
) -> None:
    gate = unique("gate")
    flow = await ok(cws, "CREATE", FLOW, data=gates_then_wait(unique("running-event"), [gate]))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    await asyncio.wait_for(clocked.gates.arrived(gate).wait(), 30)
    answer = await send_go(cws, started["id"], 1)
    assert (answer["transitions"], "queued" in answer) == ([], False)
    clocked.gates.gate(gate).set()
    assert (await settle(cws, started["id"]))["status"] == "WAITING"
