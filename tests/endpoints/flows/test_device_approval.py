"""The device-approval flow of docs/FLOWS.md, end to end over websockets."""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.helpers import EVENT, FLOW, approval, settle
from tests.flowbus.helpers import ok, unique


async def test_approved_device_ends_in_success(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("device-approval"), namespace=namespace)
    started = await ok(ws, "RUN", FLOW, objectid=flow["id"], data={"name": "sw-1"}, namespace=namespace)
    assert set(started) >= {"id", "status", "percentage", "message", "flow"}
    assert started["flow"] == {"id": flow["id"], "name": "device-approval"}
    waiting = await settle(ws, started["id"], namespace)
    assert waiting["status"] == "WAITING"
    assert waiting["currentState"] == "approval"
    device = waiting["vars"]["device"]
    assert device["name"] == "sw-1" and device["location"] == "staging"

    answer = await ok(
        ws, "RUN", EVENT, objectid="approve", data={"input": {"ok": True, "by": "ann"}}, namespace=namespace
    )
    assert answer["transitions"] == [{"contextId": started["id"], "state": "done"}]
    done = await settle(ws, started["id"], namespace)
    assert done["status"] == "SUCCESS"
    assert done["output"] == {"id": device["id"], "by": "ann"}
    assert [h["stateName"] for h in done["executionHistory"]] == ["create", "approval", "done"]
    taken = [[(t["on"], t["to"]) for t in c["transitionContexts"]] for c in done["stateContexts"]]
    assert taken == [[("success", "approval")], [("approve", "done")], []]
    assert done["percentage"] == 100


async def test_refused_device_ends_in_error(ws: ClientConnection) -> None:
    namespace = unique("ns")
    flow = await ok(ws, "CREATE", FLOW, data=approval("device-approval"), namespace=namespace)
    started = await ok(ws, "RUN", FLOW, objectid="device-approval", data={"name": "sw-2"}, namespace=namespace)
    await settle(ws, started["id"], namespace)
    await ok(ws, "RUN", EVENT, objectid="approve", data={"input": {"ok": False}}, namespace=namespace)
    done = await settle(ws, started["id"], namespace)
    assert done["status"] == "ERROR"
    assert done["currentState"] == "failed"
    assert flow["owner"] == "admin"
