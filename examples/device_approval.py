"""The device-approval flow of docs/FLOWS.md (examples/device_approval.json): create a device,
wait for an approval, end.

Run a bus (`make serve`), then: `python examples/device_approval.py`.
The bus URL comes from FLOWBUS_URL (default ws://127.0.0.1:8765), the token from FLOWBUS_TOKEN.
"""

import asyncio
import json
import os
from pathlib import Path

from flowbus.client import Client
from flowbus.errors import Conflict

FLOW = json.loads((Path(__file__).parent / "device_approval.json").read_text())


async def main() -> None:
    url = os.environ.get("FLOWBUS_URL", "ws://127.0.0.1:8765")
    async with Client(url, token=os.environ.get("FLOWBUS_TOKEN")) as bus:
        try:
            flow = await bus.create("flows/flow", FLOW)
        except Conflict:  # defined by an earlier run: start it by name
            flow = {"id": FLOW["name"]}

        # wait=true answers once the execution waits (or ends): here, for the approval
        started = await bus.run("flows/flow", flow["id"], {"name": "core-sw-9"}, parameters={"wait": True})
        print("execution", started["status"], "in", started["currentState"])

        answer = await bus.run(
            "flows/event", "approve", {"contextId": started["id"], "input": {"ok": True, "by": "ann"}}
        )
        print("moved", [(t["state"]) for t in answer["transitions"]])

        for _ in range(100):  # the rest of the flow runs in the background: poll its progress
            progress = await bus.open("flows/execution", started["id"], parameters={"view": "progress"})
            if progress["status"] not in ("RUNNING", "QUEUED"):
                break
            await asyncio.sleep(0.05)
        print("ended", progress["status"], "made device", progress["output"]["id"] is not None)


if __name__ == "__main__":
    asyncio.run(main())
