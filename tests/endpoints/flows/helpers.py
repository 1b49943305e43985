"""Flow definitions and calls shared by the flow engine's tests."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.flowbus.helpers import ok
from tests.support import ROOT

FLOW = "flows/flow"
EXECUTION = "flows/execution"
EVENT = "flows/event"

DEVICE_APPROVAL: dict[str, Any] = json.loads((ROOT / "examples" / "device_approval.json").read_text())
"""The flow of docs/FLOWS.md, as examples/device_approval.py defines it."""


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
