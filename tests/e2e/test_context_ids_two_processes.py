"""Two processes on one store start executions at once: every execution's context id is its
own across both (each process hands out numbers from blocks it reserved on the store's counter),
and either process finds an execution by the context id the other gave it. On a shared SQLite
file, and on PostgreSQL when a server answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson

from tests.support import Served, rpc

STARTS = 150
"""Executions each process starts: more than one block of numbers (100)."""
QUICK = {
    "name": "quick",
    "startState": "note",
    "states": {
        "note": {"action": "set", "vars": {"n": "=input.n"}, "transitions": [{"on": "success", "to": "done"}]},
        "done": {"action": "end", "output": "=vars.n"},
    },
}


async def call(ws: Any, method: str, endpoint: str, **fields: Any) -> Any:
    answer = await rpc(ws, {"method": method, "endpoint": endpoint, **fields})
    assert answer["success"], answer
    return answer["data"]


async def starts(served: Served, flow: str, namespace: str) -> list[dict[str, Any]]:
    """Start ``STARTS`` executions through one connection, all in flight at once."""
    async with served.connect() as ws:
        runs = [
            {
                "method": "RUN",
                "endpoint": "flows/flow",
                "objectid": flow,
                "namespace": namespace,
                "data": {"n": n},
                "requestid": n,
            }
            for n in range(STARTS)
        ]
        for message in runs:
            await ws.send(json.dumps(message))
        answers = [orjson.loads(await ws.recv()) for _ in runs]
    assert all(answer["success"] for answer in answers), [a for a in answers if not a["success"]][:1]
    return [answer["data"] for answer in answers]


async def test_context_ids_are_unique_across_two_processes(pair: tuple[Served, Served]) -> None:
    first, second = pair
    async with first.connect() as a:
        for namespace in ("", "site-b"):
            await call(a, "CREATE", "flows/flow", namespace=namespace, data=QUICK)
    made = await asyncio.gather(starts(first, "quick", ""), starts(second, "quick", "site-b"))
    numbers = [execution["contextId"] for executions in made for execution in executions]
    assert all(type(number) is int and 0 < number < 2**63 for number in numbers)
    assert len(set(numbers)) == len(numbers) == 2 * STARTS
    async with first.connect() as a, second.connect() as b:
        for ws, executions, namespace in ((b, made[0], ""), (a, made[1], "site-b")):
            for execution in executions[:: STARTS // 10]:
                found = await call(ws, "OPEN", "flows/execution", objectid=str(execution["contextId"]))
                assert (found["id"], found["contextId"]) == (execution["id"], execution["contextId"])
                by_id = await call(ws, "OPEN", "flows/execution", objectid=execution["id"], namespace=namespace)
                assert by_id["contextId"] == execution["contextId"]
