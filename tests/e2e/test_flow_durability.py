"""The flow engine after ``kill -9`` of its process and a restart on the same data directory.

What the engine promises: every transition is committed before the next state starts. After a
crash, WAITING and WAITING_UNTIL executions keep waiting (their timers re-armed, overdue ones
firing at once, events still delivered); a RUNNING execution resumes at its last committed state,
or becomes INTERRUPTED when its flow says ``onCrash: interrupt``; nothing acknowledged is lost,
and no state completes twice, except a ``call`` in flight at the kill, which is made again (at
least once).

A RUNNING execution is caught in flight by a ``call`` state to ``testing/gate`` (tests/apps.py),
which blocks until the test releases it: the gate's count of waiters tells that the execution
stands in that state, in the process that runs it. Every wait is a poll with a bound that fails
with what it last saw; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.endpoints.flows.helpers import EVENT, EXECUTION, FLOW, approval
from tests.flowbus.helpers import ok, unique
from tests.support import Served, rpc, serve

T = TypeVar("T")

APP = ("--app", "tests.apps:create_app")
GATE = "testing/gate"
DEVICE = "inventory/device"
FINAL = ("SUCCESS", "ERROR", "CANCELED", "INTERRUPTED")
BOUND = 30.0
"""Seconds a poll waits for what it expects before it fails (a hang guard, not a measure)."""


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def reaped(served: Served) -> Iterator[Served]:
    """Make sure the served process is gone when the block is left, however it is left."""
    try:
        yield served
    finally:
        if served.process.poll() is None:
            served.stop(signal.SIGKILL)


def kill_9(served: Served) -> None:
    """SIGKILL the served process and reap it."""
    served.process.kill()
    assert served.stop() == -signal.SIGKILL


async def until(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, bound: float = BOUND) -> T:
    """Fetch until ``done(value)`` holds; fail with the last value after ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {bound} s; last seen: {value!r}")
        await asyncio.sleep(0.02)


async def execution(ws: ClientConnection, objectid: str) -> dict[str, Any]:
    record: dict[str, Any] = await ok(ws, "OPEN", EXECUTION, objectid=objectid)
    return record


async def ended(ws: ClientConnection, objectid: str) -> dict[str, Any]:
    """The execution once its status is final."""
    return await until(lambda: execution(ws, objectid), lambda r: r["status"] in FINAL, f"execution {objectid} ends")


async def in_status(ws: ClientConnection, objectid: str, status: str) -> dict[str, Any]:
    return await until(
        lambda: execution(ws, objectid), lambda r: r["status"] == status, f"execution {objectid} is {status}"
    )


async def gate(ws: ClientConnection, name: str) -> dict[str, Any]:
    """The gate's status in the process ``ws`` talks to: ``waiting`` calls, ``touched`` count."""
    status: dict[str, Any] = await ok(ws, "RUN", GATE, objectid=name, data={"action": "status"})
    return status


async def devices(ws: ClientConnection, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await ok(ws, "LIST", DEVICE, parameters={"name": name, "limit": 100})
    return found


def history(record: dict[str, Any]) -> list[str]:
    """The states the execution entered, in order."""
    return [entry["stateName"] for entry in record["executionHistory"]]


def completed(record: dict[str, Any]) -> list[str]:
    """The states whose run was committed, in order."""
    return [context["name"] for context in record["stateContexts"]]


def epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def gated(name: str, gate_name: str, *, on_crash: str | None = None) -> dict[str, Any]:
    """``before`` creates a device, ``block`` calls the gate (and blocks there), ``after`` creates
    another device, ``done`` ends with both ids."""
    flow: dict[str, Any] = {
        "name": name,
        "startState": "before",
        "states": {
            "before": {
                "action": "call",
                "endpoint": DEVICE,
                "method": "CREATE",
                "data": {"name": "=input.name", "step": "before"},
                "result": "first",
                "transitions": [{"on": "success", "to": "block"}],
            },
            "block": {
                "action": "call",
                "endpoint": GATE,
                "method": "RUN",
                "objectid": gate_name,
                "data": {"action": "wait"},
                "result": "gate",
                "transitions": [{"on": "success", "to": "after"}],
            },
            "after": {
                "action": "call",
                "endpoint": DEVICE,
                "method": "CREATE",
                "data": {"name": "=input.name", "step": "after"},
                "result": "second",
                "transitions": [{"on": "success", "to": "done"}],
            },
            "done": {"action": "end", "output": {"first": "=vars.first.id", "second": "=vars.second.id"}},
        },
    }
    if on_crash is not None:
        flow["onCrash"] = on_crash
    return flow


def pause(name: str, seconds: float) -> dict[str, Any]:
    """``pause`` waits ``seconds`` (WAITING_UNTIL), then ``done`` ends."""
    return {
        "name": name,
        "startState": "pause",
        "states": {
            "pause": {"action": "wait", "seconds": seconds, "transitions": [{"on": "success", "to": "done"}]},
            "done": {"action": "end", "output": {"waited": seconds}},
        },
    }


def deadline(name: str, seconds: float) -> dict[str, Any]:
    """``listen`` waits for an event that never comes, with a timeout of ``seconds`` (WAITING)."""
    return {
        "name": name,
        "startState": "listen",
        "states": {
            "listen": {
                "action": "wait",
                "event": "never",
                "timeout": seconds,
                "transitions": [{"on": "never", "to": "heard"}, {"on": "timeout", "to": "timed-out"}],
            },
            "heard": {"action": "end", "status": "ERROR"},
            "timed-out": {"action": "end", "output": {"timedOut": True}},
        },
    }


async def blocked_in_gate(ws: ClientConnection, flow: dict[str, Any], gate_name: str, device: str) -> str:
    """Start ``flow`` and wait until its execution stands RUNNING in ``block``, its call at the gate."""
    await ok(ws, "CREATE", FLOW, data=flow)
    started = await ok(ws, "RUN", FLOW, objectid=flow["name"], data={"name": device})
    await until(lambda: gate(ws, gate_name), lambda s: s["waiting"] == 1, "the block state's call waits at the gate")
    record = await execution(ws, started["id"])
    assert record["status"] == "RUNNING", record
    assert record["currentState"] == "block", record
    assert history(record) == ["before", "block"]
    return str(started["id"])


# -- RUNNING at the kill ------------------------------------------------------------------------


async def test_a_running_execution_resumes_at_its_last_committed_state(tmp_path: Path) -> None:
    """kill -9 while a ``call`` state is in flight: after the restart the execution starts that
    state again (its call is made again), goes on and ends SUCCESS; the state committed before
    it does not run again (one ``before`` device)."""
    gate_name, device = unique("gate"), unique("sw")
    with reaped(serve(tmp_path, *APP)) as served:
        async with served.connect() as ws:
            objectid = await blocked_in_gate(ws, gated("resume", gate_name), gate_name, device)
        kill_9(served)

    with reaped(serve(tmp_path, *APP)) as restarted:
        async with restarted.connect() as ws:
            await until(
                lambda: gate(ws, gate_name),
                lambda s: s["waiting"] == 1,
                "after the restart the execution makes the block state's call again",
            )
            record = await execution(ws, objectid)
            assert record["status"] == "RUNNING", record
            assert record["currentState"] == "block"
            assert history(record) == ["before", "block"]
            assert completed(record) == ["before"]

            released = await ok(ws, "RUN", GATE, objectid=gate_name, data={"action": "release"})
            assert released["released"] == 1
            done = await ended(ws, objectid)
            assert done["status"] == "SUCCESS", done
            assert history(done) == ["before", "block", "after", "done"]
            assert completed(done) == ["before", "block", "after", "done"]
            made = await devices(ws, device)
            assert sorted(d["step"] for d in made) == ["after", "before"], made
            by_step = {d["step"]: d["id"] for d in made}
            assert done["output"] == {"first": by_step["before"], "second": by_step["after"]}
        assert restarted.stop() == 0


async def test_a_running_execution_of_an_on_crash_interrupt_flow_becomes_interrupted(tmp_path: Path) -> None:
    """kill -9 while a flow with ``onCrash: interrupt`` runs: after the restart its execution is
    INTERRUPTED where it stood, and none of its work is done again or further."""
    gate_name, device = unique("gate"), unique("sw")
    with reaped(serve(tmp_path, *APP)) as served:
        async with served.connect() as ws:
            flow = gated("interrupt", gate_name, on_crash="interrupt")
            objectid = await blocked_in_gate(ws, flow, gate_name, device)
        kill_9(served)

    with reaped(serve(tmp_path, *APP)) as restarted:
        async with restarted.connect() as ws:
            record = await ended(ws, objectid)
            assert record["status"] == "INTERRUPTED", record
            assert record["currentState"] == "block"
            assert history(record) == ["before", "block"]
            assert completed(record) == ["before"]
            assert await gate(ws, gate_name) == {"waiting": 0, "touched": 0, "slow": 0}
            assert [d["step"] for d in await devices(ws, device)] == ["before"]
            progress = await ok(ws, "OPEN", EXECUTION, objectid=objectid, parameters={"view": "progress"})
            assert progress["status"] == "INTERRUPTED"
        assert restarted.stop() == 0


# -- WAITING and WAITING_UNTIL at the kill ------------------------------------------------------


async def test_timers_are_rearmed_after_kill_9_and_overdue_ones_fire_at_once(tmp_path: Path) -> None:
    """Waits of 2 s (``seconds``), of 2 s (an event's ``timeout``), of 8 s and of an hour, then
    kill -9; the restart comes once the 2 s deadlines are past. The overdue timers fire on their
    own (SUCCESS, the timeout taking its ``timeout`` transition), the 8 s one fires at its time,
    never before its deadline, and the hour-long one keeps waiting with its deadline unchanged."""
    with reaped(serve(tmp_path)) as served:
        async with served.connect() as ws:
            flows = [pause("soon", 2), deadline("deadline", 2), pause("mid", 8), pause("later", 3600)]
            ids: dict[str, str] = {}
            for flow in flows:
                await ok(ws, "CREATE", FLOW, data=flow)
                ids[flow["name"]] = (await ok(ws, "RUN", FLOW, objectid=flow["name"]))["id"]
            waits = {"soon": "WAITING_UNTIL", "deadline": "WAITING", "mid": "WAITING_UNTIL", "later": "WAITING_UNTIL"}
            before = {name: await in_status(ws, ids[name], status) for name, status in waits.items()}
        kill_9(served)
    due: dict[str, int] = {name: record["nextRun"] for name, record in before.items()}
    assert all(isinstance(value, int) for value in due.values()), due

    while time.time() * 1000 <= max(due["soon"], due["deadline"]) + 100:  # let the 2 s deadlines pass
        await asyncio.sleep(0.05)

    with reaped(serve(tmp_path)) as restarted:
        async with restarted.connect() as ws:
            mid = await execution(ws, ids["mid"])
            if time.time() * 1000 < due["mid"]:
                assert mid["status"] == "WAITING_UNTIL", mid  # not fired before its time

            soon = await ended(ws, ids["soon"])
            assert soon["status"] == "SUCCESS", soon
            assert history(soon) == ["pause", "done"]
            assert soon["output"] == {"waited": 2}

            timed_out = await ended(ws, ids["deadline"])
            assert timed_out["status"] == "SUCCESS", timed_out
            assert history(timed_out) == ["listen", "timed-out"]
            assert timed_out["output"] == {"timedOut": True}

            mid = await ended(ws, ids["mid"])
            assert mid["status"] == "SUCCESS", mid
            assert history(mid) == ["pause", "done"]

            for name, record in (("soon", soon), ("deadline", timed_out), ("mid", mid)):
                fired = epoch_ms(record["stateContexts"][0]["ended"])
                assert fired >= due[name], f"{name}: the timer fired before its deadline"
                assert completed(record) == [history(record)[0], history(record)[1]]

            later = await execution(ws, ids["later"])
            assert later["status"] == "WAITING_UNTIL", later
            assert later["nextRun"] == due["later"]
            assert history(later) == ["pause"] and completed(later) == []
        assert restarted.stop() == 0


async def test_a_waiting_execution_still_takes_its_event_after_kill_9(tmp_path: Path) -> None:
    """kill -9 while an execution waits for ``approve``: after the restart the event moves it to
    ``done`` and it ends SUCCESS; the device its first state created is not created again."""
    with reaped(serve(tmp_path)) as served:
        async with served.connect() as ws:
            await ok(ws, "CREATE", FLOW, data=approval("approval"))
            started = await ok(ws, "RUN", FLOW, objectid="approval", data={"name": "sw-approved"})
            waiting = await in_status(ws, started["id"], "WAITING")
            assert waiting["currentState"] == "approval"
        kill_9(served)

    with reaped(serve(tmp_path)) as restarted:
        async with restarted.connect() as ws:
            record = await execution(ws, started["id"])
            assert record["status"] == "WAITING", record
            assert record["currentState"] == "approval"
            answer = await ok(ws, "RUN", EVENT, objectid="approve", data={"input": {"ok": True, "by": "ann"}})
            assert answer["transitions"] == [{"contextId": started["id"], "state": "done"}]
            done = await ended(ws, started["id"])
            assert done["status"] == "SUCCESS", done
            assert history(done) == ["create", "approval", "done"]
            assert completed(done) == ["create", "approval", "done"]
            made = await devices(ws, "sw-approved")
            assert [d["id"] for d in made] == [waiting["vars"]["device"]["id"]]
            assert done["output"] == {"id": waiting["vars"]["device"]["id"], "by": "ann"}
        assert restarted.stop() == 0


# -- many executions at the kill ----------------------------------------------------------------

WORKERS = 12
KILL_AFTER = 150
START = {"method": "RUN", "endpoint": FLOW, "objectid": "hold"}


def hold(name: str) -> dict[str, Any]:
    """``note`` sets a variable, ``hold`` waits for ``release``, ``done`` ends with the variable."""
    return {
        "name": name,
        "startState": "note",
        "states": {
            "note": {"action": "set", "vars": {"n": "=input.n"}, "transitions": [{"on": "success", "to": "hold"}]},
            "hold": {"action": "wait", "event": "release", "transitions": [{"on": "release", "to": "done"}]},
            "done": {"action": "end", "output": "=vars.n"},
        },
    }


async def all_executions(ws: ClientConnection) -> list[dict[str, Any]]:
    answer = await rpc(ws, {"method": "LIST", "endpoint": EXECUTION, "parameters": {"limit": 1000}})
    assert answer["success"] is True, answer
    assert answer["page"]["total"] == len(answer["data"]), answer["page"]
    items: list[dict[str, Any]] = answer["data"]
    return items


async def statuses(ws: ClientConnection) -> Counter[str]:
    """How many executions are in each status."""
    return Counter(item["status"] for item in await all_executions(ws))


async def test_kill_9_during_a_burst_of_starts_loses_no_acknowledged_execution(tmp_path: Path) -> None:
    """Executions started from several connections; kill -9 right after the KILL_AFTER-th start is
    acknowledged, with starts and first steps in flight. After the restart every acknowledged
    execution is there, reaches ``hold`` with its own input, and ends SUCCESS on ``release``,
    each state in its history once."""
    numbers = itertools.count()
    acked: dict[str, int] = {}
    with reaped(serve(tmp_path)) as served:
        async with served.connect() as ws:
            await ok(ws, "CREATE", FLOW, data=hold("hold"))

        async def starter() -> None:
            async with served.connect() as ws:
                with contextlib.suppress(ConnectionClosed):
                    while len(acked) < KILL_AFTER:
                        n = next(numbers)
                        answer = await rpc(ws, {**START, "data": {"n": n}})
                        assert answer["success"] is True, answer
                        acked[answer["data"]["id"]] = n
                        if len(acked) == KILL_AFTER:
                            served.process.kill()

        async with asyncio.timeout(BOUND):  # a hang guard
            await asyncio.gather(*(starter() for _ in range(WORKERS)))
        assert served.stop() == -signal.SIGKILL
    assert len(acked) >= KILL_AFTER

    with reaped(serve(tmp_path)) as restarted:
        async with restarted.connect() as ws:
            found = {item["id"] for item in await all_executions(ws)}
            assert set(acked) <= found, f"lost: {sorted(set(acked) - found)}"
            assert len(found) <= len(acked) + WORKERS  # at most one start in flight per connection
            await until(
                lambda: statuses(ws),
                lambda counts: counts == {"WAITING": len(found)},
                "every execution reaches hold after the restart",
            )
            for objectid, n in acked.items():
                record = await execution(ws, objectid)
                assert history(record) == ["note", "hold"], record
                assert completed(record) == ["note"], record
                assert record["vars"] == {"n": n}

            answer = await ok(ws, "RUN", EVENT, objectid="release")
            assert {t["contextId"] for t in answer["transitions"]} == found
            assert len(answer["transitions"]) == len(found)
            await until(
                lambda: statuses(ws),
                lambda counts: counts == {"SUCCESS": len(found)},
                "every execution ends SUCCESS",
            )
            for objectid, n in acked.items():
                record = await execution(ws, objectid)
                assert history(record) == ["note", "hold", "done"], record
                assert completed(record) == ["note", "hold", "done"], record
                assert record["output"] == n
        assert restarted.stop() == 0
