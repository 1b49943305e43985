"""Two processes on one store send the same event to the same waiting execution at once:
exactly one moves it. The engine moves an execution only by a conditional write on its
version, so this holds across processes as within one: on a shared SQLite file and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import Served, rpc

ROUNDS = 20
LISTENER = {
    "name": "listener",
    "startState": "listen",
    "states": {
        "listen": {"action": "wait", "event": "go", "transitions": [{"on": "go", "to": "heard"}]},
        "heard": {"action": "end", "output": "=event.input"},
    },
}


async def call(ws: Any, method: str, endpoint: str, **fields: Any) -> Any:
    answer = await rpc(ws, {"method": method, "endpoint": endpoint, **fields})
    assert answer["success"], answer
    return answer["data"]


async def test_the_same_event_through_two_processes_moves_one_execution_once(pair: tuple[Served, Served]) -> None:
    first, second = pair
    async with first.connect() as a, second.connect() as b:
        flow = await call(a, "CREATE", "flows/flow", data=LISTENER)
        for round_ in range(ROUNDS):
            started = await call(a, "RUN", "flows/flow", objectid=flow["id"], parameters={"wait": True})
            assert started["status"] == "WAITING"
            event = {"contextId": started["id"], "input": {"round": round_}}
            answers = await asyncio.gather(
                call(a, "RUN", "flows/event", objectid="go", data=event),
                call(b, "RUN", "flows/event", objectid="go", data=event),
            )
            moved = [answer["transitions"] for answer in answers]
            assert sorted(len(t) for t in moved) == [0, 1], moved
            assert [t for t in moved if t] == [[{"contextId": started["id"], "state": "heard"}]]
            for _ in range(500):
                record = await call(b, "OPEN", "flows/execution", objectid=started["id"])
                if record["status"] == "SUCCESS":
                    break
                await asyncio.sleep(0.01)
            assert record["status"] == "SUCCESS"
            assert [h["stateName"] for h in record["executionHistory"]] == ["listen", "heard"]
            assert len(record["stateContexts"]) == 2
