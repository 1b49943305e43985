"""S6, the flow engine: executions per second of a 3-state flow, and the time from an event to
the transition it causes while many executions wait.

The client is Python (websockets): an execution costs the bus several commits, so the client's
work per execution is small beside the bus's. Each connection starts one execution at a time
with ``parameters.wait=true``, which answers once the execution has ended (every transition of
it committed). Commits per execution are counted from the bus's change log (one change per
write, each durable before the bus goes on), not assumed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from flowbench.workload import call

__all__ = ["EventLatency", "Executions", "changes_in", "event_latency", "executions"]

NAMESPACE = "bench-s6"
FLOW = "flows/flow"
THREE_STATES: dict[str, Any] = {
    "name": "bench-three-states",
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
        "note": {"action": "set", "vars": {"seen": "=vars.device.id"}, "transitions": [{"on": "success", "to": "end"}]},
        "end": {"action": "end", "output": {"id": "=vars.seen"}},
    },
}
LISTENER: dict[str, Any] = {
    "name": "bench-listener",
    "startState": "listen",
    "states": {
        "listen": {"action": "wait", "event": "go", "transitions": [{"on": "go", "to": "heard"}]},
        "heard": {"action": "end"},
    },
}
WRITES_PER_EXECUTION = 5
"""What the 3-state flow writes by its shape (the execution, the device, three transitions):
used when the bus's change log cannot be read (a bus this run did not start)."""


@dataclass(slots=True)
class Executions:
    executions: int
    errors: int
    seconds: float
    first_error: str | None = None


@dataclass(slots=True)
class EventLatency:
    events: int
    errors: int
    seconds: float
    p50_us: float | None
    p99_us: float | None
    waiting: int


async def _ensure_flow(ws: ClientConnection, definition: dict[str, Any]) -> str:
    answer = await call(ws, {"method": "CREATE", "endpoint": FLOW, "namespace": NAMESPACE, "data": definition})
    if answer.get("success"):
        return str(answer["data"]["id"])
    if answer.get("errorcode") != "CONFLICT":
        raise RuntimeError(f"S6: cannot create the flow {definition['name']}: {answer.get('message')}")
    return str(definition["name"])  # made by an earlier round: RUN takes its name too


async def _run_one(ws: ClientConnection, flow: str, i: int) -> dict[str, Any]:
    envelope = {
        "method": "RUN",
        "endpoint": FLOW,
        "objectid": flow,
        "namespace": NAMESPACE,
        "data": {"name": f"s6-{i}"},
        "parameters": {"wait": True},
    }
    return await call(ws, envelope)


async def _worker(url: str, flow: str, deadline: float, budget: list[int], result: Executions) -> None:
    async with connect(url, compression=None, max_size=None) as ws:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            answer = await _run_one(ws, flow, budget[0])
            ok = answer.get("success") and answer["data"].get("status") == "SUCCESS"
            result.executions += 1
            if not ok:
                result.errors += 1
                result.first_error = result.first_error or str(answer.get("message") or answer.get("data"))


async def executions(url: str, connections: int, calls: int, seconds: float) -> Executions:
    """Run the 3-state flow on ``connections`` connections until ``calls`` executions or ``seconds``."""
    async with connect(url, compression=None) as ws:
        flow = await _ensure_flow(ws, THREE_STATES)
    result = Executions(0, 0, 0.0)
    started = time.monotonic()
    budget = [calls]
    workers = [_worker(url, flow, started + seconds, budget, result) for _ in range(connections)]
    await asyncio.gather(*workers)
    result.seconds = time.monotonic() - started
    return result


async def _start_waiting(url: str, flow: str, count: int, connections: int) -> list[str]:
    ids: list[str] = []

    async def starter(share: int) -> None:
        async with connect(url, compression=None) as ws:
            for _ in range(share):
                envelope = {"method": "RUN", "endpoint": FLOW, "objectid": flow, "namespace": NAMESPACE}
                answer = await call(ws, {**envelope, "parameters": {"wait": True}})
                if not answer.get("success") or answer["data"]["status"] != "WAITING":
                    raise RuntimeError(f"S6: a listener did not wait: {answer}")
                ids.append(answer["data"]["id"])

    shares = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    await asyncio.gather(*(starter(share) for share in shares if share))
    return ids


async def event_latency(url: str, waiting: int, events: int, connections: int) -> EventLatency:
    """Start ``waiting`` executions that wait for an event, then send ``events`` events one at a
    time, each to one execution (by contextId), timing each from sending to its answer (which
    comes once the transition is committed)."""
    async with connect(url, compression=None) as ws:
        flow = await _ensure_flow(ws, LISTENER)
    ids = await _start_waiting(url, flow, waiting, connections)
    latencies: list[float] = []
    errors = 0
    started = time.monotonic()
    async with connect(url, compression=None) as ws:
        for contextid in ids[:events]:
            envelope = {"method": "RUN", "endpoint": "flows/event", "objectid": "go", "namespace": NAMESPACE}
            sent = time.perf_counter()
            answer = await call(ws, {**envelope, "data": {"contextId": contextid}})
            latencies.append((time.perf_counter() - sent) * 1e6)
            if not answer.get("success") or len(answer["data"]["transitions"]) != 1:
                errors += 1
    seconds = time.monotonic() - started
    return EventLatency(len(latencies), errors, seconds, _quantile(latencies, 0.5), _quantile(latencies, 0.99), waiting)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if q < 1 else max(values)


def changes_in(database: Path) -> int | None:
    """The latest sequence number of the bus's change log (read-only), or None if unreadable."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
            row = db.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])
