"""Flow definitions and calls shared by the flow engine's tests."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.flowbus.helpers import ok

FLOW = "flows/flow"
EXECUTION = "flows/execution"
EVENT = "flows/event"

DEVICE_APPROVAL: dict[str, Any] = {
    "name": "device-approval",
    "startState": "create",
    "input": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    "states": {
        "create": {
            "action": "call",
            "endpoint": "inventory/device",
            "method": "CREATE",
            "data": {"name": "=input.name", "location": "staging"},
            "result": "device",
            "message": "Creating the device",
            "transitions": [{"on": "success", "to": "approval"}, {"on": "error", "to": "failed"}],
        },
        "approval": {
            "action": "wait",
            "event": "approve",
            "timeout": 86400,
            "transitions": [
                {"on": "approve", "to": "done", "if": "=event.input.ok"},
                {"on": "approve", "to": "failed"},
                {"on": "timeout", "to": "failed"},
            ],
        },
        "done": {"action": "end", "output": {"id": "=vars.device.id", "by": "=event.input.by"}},
        "failed": {"action": "end", "status": "ERROR"},
    },
}


def approval(name: str) -> dict[str, Any]:
    """The device-approval flow under another name."""
    flow = copy.deepcopy(DEVICE_APPROVAL)
    flow["name"] = name
    return flow


def three_states(name: str) -> dict[str, Any]:
    """call, set, end: the flow of the benchmark."""
    return {
        "name": name,
        "startState": "create",
        "states": {
            "create": {
                "action": "call",
                "endpoint": "inventory/device",
                "method": "CREATE",
                "data": {"name": "=input.name"},
                "result": "device",
                "transitions": [{"on": "success", "to": "note"}],
            },
            "note": {
                "action": "set",
                "vars": {"seen": "=vars.device.id"},
                "transitions": [{"on": "success", "to": "end"}],
            },
            "end": {"action": "end", "output": {"id": "=vars.seen"}},
        },
    }


async def settle(
    ws: ClientConnection, execution: str, namespace: str = "", *, until: tuple[str, ...] = ()
) -> dict[str, Any]:
    """OPEN the execution until its status is one of ``until`` (default: not RUNNING or QUEUED)."""
    for _ in range(2000):
        record: dict[str, Any] = await ok(ws, "OPEN", EXECUTION, objectid=execution, namespace=namespace)
        if (record["status"] in until) if until else record["status"] not in ("RUNNING", "QUEUED"):
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"execution {execution} stays {record['status']}")
