"""The flow engine after ``kill -9``: what was committed goes on, nothing acknowledged is lost.

Every transition is committed before the next state starts, so after a SIGKILL and a restart:
a RUNNING execution starts its current state again (the ``call`` in flight at the kill is made
a second time: at least once) and never a state that had completed, or it becomes INTERRUPTED
when its flow says ``onCrash: interrupt``; WAITING and WAITING_UNTIL executions keep waiting,
their timers are armed again (an overdue one fires at once) and events still reach them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from tests.support import Served, rpc, serve

APP = ("--app", "tests.apps:create_app")
FLOW = "flows/flow"
EXECUTION = "flows/execution"
DEADLINE = 30.0


def held(name: str, gate: str, **more: Any) -> dict[str, Any]:
    """create a device, wait at gate ``gate`` (a call that blocks), create a second device, end."""
    return {
        "name": name,
        "startState": "before",
        "states": {
            "before": _create("=input.name", "held"),
            "held": {
                "action": "call",
                "endpoint": "testing/gate",
                "method": "RUN",
                "objectid": gate,
                "data": {"action": "wait"},
                "transitions": [{"on": "success", "to": "after"}],
            },
            "after": _create("=join('-', [input.name, 'after'])", "end"),
            "end": {"action": "end", "output": "=vars"},
        },
        **more,
    }


def _create(name: str, then: str) -> dict[str, Any]:
    return {
        "action": "call",
        "endpoint": "inventory/device",
        "method": "CREATE",
        "data": {"name": name},
        "transitions": [{"on": "success", "to": then}],
    }


async def call(served: Served, method: str, endpoint: str, **fields: Any) -> Any:
    async with served.connect() as ws:
        answer = await rpc(ws, {"method": method, "endpoint": endpoint, **fields})
    assert answer["success"], answer
    return answer["data"]


async def until(served: Served, what: str, check: Any) -> Any:
    """Poll ``check(served)`` until it answers something true (at most DEADLINE seconds)."""
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE:
        found = await check(served)
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what}: not within {DEADLINE} s")


async def status_of(served: Served, execution: str) -> str:
    record = await call(served, "OPEN", EXECUTION, objectid=execution)
    return str(record["status"])


async def devices_named(served: Served, name: str) -> int:
    return len(await call(served, "LIST", "inventory/device", parameters={"name": name}))


def killed(served: Served) -> None:
    served.process.send_signal(signal.SIGKILL)
    served.process.wait()
    served.stop()


async def start_held(served: Served, name: str, gate: str, **more: Any) -> str:
    flow = await call(served, "CREATE", FLOW, data=held(name, gate, **more))
    started = await call(served, "RUN", FLOW, objectid=flow["id"], data={"name": name})

    async def at_the_gate(s: Served) -> bool:
        status = await call(s, "RUN", "testing/gate", objectid=gate, data={"action": "status"})
        return bool(status["waiting"] == 1)

    await until(served, "the execution reaches the gate", at_the_gate)
    return str(started["id"])


async def test_running_execution_resumes_at_its_last_committed_state(tmp_path: Path) -> None:
    served = serve(tmp_path / "one", *APP)
    try:
        execution = await start_held(served, "resumed", "g-resume")
        record = await call(served, "OPEN", EXECUTION, objectid=execution)
        assert (record["status"], record["currentState"]) == ("RUNNING", "held")
        killed(served)
        served = serve(tmp_path / "two", "--data", str(served.data), *APP)

        async def waits_again(s: Served) -> bool:
            status = await call(s, "RUN", "testing/gate", objectid="g-resume", data={"action": "status"})
            return bool(status["waiting"] == 1)

        await until(served, "the held state starts again after the restart", waits_again)
        await call(served, "RUN", "testing/gate", objectid="g-resume", data={"action": "release"})

        async def ended(s: Served) -> str | None:
            status = await status_of(s, execution)
            return status if status not in ("RUNNING", "QUEUED") else None

        assert await until(served, "the execution ends", ended) == "SUCCESS"
        assert await devices_named(served, "resumed") == 1  # the state committed before the kill ran once
        assert await devices_named(served, "resumed-after") == 1
        record = await call(served, "OPEN", EXECUTION, objectid=execution)
        assert [h["stateName"] for h in record["executionHistory"]] == ["before", "held", "after", "end"]
    finally:
        served.stop()


async def test_running_execution_of_an_interrupt_flow_is_interrupted(tmp_path: Path) -> None:
    served = serve(tmp_path / "one", *APP)
    try:
        execution = await start_held(served, "interrupted", "g-interrupt", onCrash="interrupt")
        killed(served)
        served = serve(tmp_path / "two", "--data", str(served.data), *APP)

        async def interrupted(s: Served) -> bool:
            return await status_of(s, execution) == "INTERRUPTED"

        await until(served, "the execution is INTERRUPTED", interrupted)
        assert await devices_named(served, "interrupted-after") == 0
        status = await call(served, "RUN", "testing/gate", objectid="g-interrupt", data={"action": "status"})
        assert status["waiting"] == 0
    finally:
        served.stop()


def sleeper(seconds: float) -> dict[str, Any]:
    return {
        "name": "sleeper",
        "startState": "nap",
        "states": {
            "nap": {"action": "wait", "seconds": seconds, "transitions": [{"on": "success", "to": "up"}]},
            "up": {"action": "end", "output": "awake"},
        },
    }


def listener() -> dict[str, Any]:
    return {
        "name": "listener",
        "startState": "listen",
        "states": {
            "listen": {"action": "wait", "event": "go", "transitions": [{"on": "go", "to": "heard"}]},
            "heard": {"action": "end", "output": "=event.input"},
        },
    }


async def test_waiting_executions_keep_waiting_and_overdue_timers_fire_at_once(tmp_path: Path) -> None:
    served = serve(tmp_path / "one")
    try:
        sleeper_flow = await call(served, "CREATE", FLOW, data=sleeper(1.5))
        listener_flow = await call(served, "CREATE", FLOW, data=listener())
        napping = (await call(served, "RUN", FLOW, objectid=sleeper_flow["id"], parameters={"wait": True}))["id"]
        listening = (await call(served, "RUN", FLOW, objectid=listener_flow["id"], parameters={"wait": True}))["id"]
        record = await call(served, "OPEN", EXECUTION, objectid=napping)
        assert record["status"] == "WAITING_UNTIL"
        assert await status_of(served, listening) == "WAITING"
        killed(served)
        while time.time() * 1000 <= record["nextRun"] + 100:  # the timer is due while no process runs
            await asyncio.sleep(0.1)
        served = serve(tmp_path / "two", "--data", str(served.data))

        async def awake(s: Served) -> bool:
            return await status_of(s, napping) == "SUCCESS"

        await until(served, "the overdue timer fires after the restart", awake)
        assert await status_of(served, listening) == "WAITING"
        answer = await call(served, "RUN", "flows/event", objectid="go", data={"input": {"after": "restart"}})
        assert answer["transitions"] == [{"contextId": listening, "state": "heard"}]

        async def heard(s: Served) -> Any:
            found = await call(s, "OPEN", EXECUTION, objectid=listening)
            return found if found["status"] == "SUCCESS" else None

        assert (await until(served, "the event is delivered", heard))["output"] == {"after": "restart"}
    finally:
        served.stop()
