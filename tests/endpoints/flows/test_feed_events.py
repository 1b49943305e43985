"""The engine and the change feed: what it commits itself it acts on at once, and passes over
when the feed brings it back; what another process commits it acts on when the feed brings it.

"Another process" is a write made straight to the bus's store (the same store, the same change
log), as a second bus sharing the store would make it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, settle, three_states
from tests.endpoints.flows.test_executions import gated
from tests.flowbus.helpers import ok, unique
from tests.support import rpc


def _no_text(obj: dict[str, Any]) -> str:
    return ""


async def until_nothing_in_flight(clocked: Clocked) -> None:
    """Wait until the feed has brought back every commit the engine made (a hang guard, not a measure)."""
    for _ in range(2000):
        if clocked.engine.repository.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{clocked.engine.repository.in_flight} executions keep a commit in flight")


async def test_commits_the_feed_brought_back_leave_nothing_behind(clocked: Clocked, cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=three_states(unique("kept")))
    started = [await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": f"d{n}"}) for n in range(12)]
    ended = [await settle(cws, s["id"]) for s in started]
    assert {e["status"] for e in ended} == {"SUCCESS"}
    assert all(e["version"] >= 3 for e in ended)  # started, moved twice, ended: commits of the engine's own
    await until_nothing_in_flight(clocked)


def looping(name: str, times: int) -> dict[str, Any]:
    """A flow of ``set`` states that commits ``times`` steps back to back, with no wait between."""
    again = [{"on": "success", "to": "loop", "if": f"=vars.n < `{times}`"}, {"on": "success", "to": "end"}]
    return {
        "name": name,
        "startState": "init",
        "states": {
            "init": {"action": "set", "vars": {"n": 0}, "transitions": [{"on": "success", "to": "loop"}]},
            "loop": {"action": "set", "vars": {"n": "=sum([vars.n, `1`])"}, "transitions": again},
            "end": {"action": "end", "output": "=vars.n"},
        },
    }


async def test_commits_made_back_to_back_leave_nothing_behind(clocked: Clocked, cws: ClientConnection) -> None:
    """Each step's commit follows the last at once: the feed brings them back while the next
    one is being written."""
    flow = await ok(cws, "CREATE", FLOW, data=looping(unique("loop"), 60))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    done = await settle(cws, started["id"])
    assert (done["status"], done["output"], done["version"]) == ("SUCCESS", 60, 63)
    await until_nothing_in_flight(clocked)


async def test_a_stop_committed_elsewhere_reaches_an_execution_last_written_here(
    clocked: Clocked, cws: ClientConnection
) -> None:
    """The engine wrote the execution last; a hard stop committed by another process is a newer
    version, which the engine acts on: the waiting RUN is answered, the state's work abandoned."""
    gate = unique("gate")
    flow = await ok(cws, "CREATE", FLOW, data=gated(unique("stopped"), gate))
    async with clocked.connect() as runner:
        run = asyncio.create_task(
            rpc(runner, {"method": "RUN", "endpoint": FLOW, "objectid": flow["id"], "parameters": {"wait": True}})
        )
        await asyncio.wait_for(clocked.gates.arrived(gate).wait(), 30)
        found = await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"]})
        record = await clocked.bus.store.get(EXECUTION, "", found[0]["id"])
        assert record is not None and record["status"] == "RUNNING"
        stop = {"status": "CANCELED", "waiting": False, "message": "Stopped"}
        await clocked.bus.store.patch(EXECUTION, "", record["id"], stop, _no_text, expect=record["version"])
        answer = await asyncio.wait_for(run, 30)
    assert answer["success"] is True, answer
    assert answer["data"]["status"] == "CANCELED"
    clocked.gates.gate(gate).set()  # the abandoned call, if it were still waiting, would go on
    done = await ok(cws, "OPEN", EXECUTION, objectid=record["id"])
    assert done["status"] == "CANCELED"
    assert clocked.gates.calls[gate] == 1
    assert [c["name"] for c in done["stateContexts"]] == []
