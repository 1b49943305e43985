"""Waits on time, state timeouts and schedules, on a clock the test moves."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import START, Clocked
from tests.endpoints.flows.helpers import EVENT, EXECUTION, FLOW, approval, settle
from tests.flowbus.helpers import fails, ok, unique


def sleeper(name: str, wait: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "startState": "nap",
        "states": {
            "nap": {"action": "wait", **wait, "transitions": [{"on": "success", "to": "up"}]},
            "up": {"action": "end", "output": "=state.name"},
        },
    }


async def test_wait_seconds_is_waiting_until_then_fires(clocked: Clocked, cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=sleeper("nap", {"seconds": 600}))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    waiting = await settle(cws, started["id"])
    assert waiting["status"] == "WAITING_UNTIL"
    assert waiting["waiting"] is True
    assert waiting["nextRun"] == int((START + 600) * 1000)
    clocked.clock.advance(599)
    assert (await settle(cws, started["id"]))["status"] == "WAITING_UNTIL"
    clocked.clock.advance(1)
    done = await settle(cws, started["id"], until=("SUCCESS", "ERROR"))
    assert done["status"] == "SUCCESS"


async def test_wait_until_a_time(clocked: Clocked, cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=sleeper("until", {"until": "=input.at"}))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"at": "2026-01-01T01:00:00Z"})
    waiting = await settle(cws, started["id"])
    assert waiting["nextRun"] == int((START + 3600) * 1000)
    clocked.clock.advance(3600)
    assert (await settle(cws, started["id"], until=("SUCCESS", "ERROR")))["status"] == "SUCCESS"


async def test_event_wait_times_out(clocked: Clocked, cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=approval("approval-timeout"))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"name": "sw-t"})
    await settle(cws, started["id"])
    clocked.clock.advance(86400)
    done = await settle(cws, started["id"], until=("SUCCESS", "ERROR"))
    assert (done["status"], done["currentState"]) == ("ERROR", "failed")
    approval_context = next(c for c in done["stateContexts"] if c["name"] == "approval")
    assert approval_context["transitionContexts"] or approval_context["ended"]
    late = await ok(cws, "RUN", EVENT, objectid="approve", data={"input": {"ok": True}})
    assert late["transitions"] == []


async def test_state_timeout_takes_the_timeout_transition(clocked: Clocked, cws: ClientConnection) -> None:
    definition = {
        "name": "slow-call",
        "startState": "call",
        "states": {
            "call": {
                "action": "call",
                "endpoint": "testflows/gate",
                "method": "RUN",
                "objectid": "never",
                "timeout": 0.05,
                "transitions": [{"on": "success", "to": "ok"}, {"on": "timeout", "to": "late"}],
            },
            "ok": {"action": "end"},
            "late": {"action": "end", "status": "ERROR", "output": "late"},
        },
    }
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    done = await settle(cws, started["id"])
    assert (done["status"], done["currentState"], done["output"]) == ("ERROR", "late", "late")


async def test_schedule_starts_the_flow_as_its_owner(clocked: Clocked, cws: ClientConnection) -> None:
    definition = {**sleeper("every-5", {"seconds": 1}), "schedule": "*/5 * * * *"}
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    clocked.clock.advance(299)
    assert await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"]}) == []
    clocked.clock.advance(1)
    executions = await _eventually(cws, {"flow": flow["id"]}, 1)
    assert executions[0]["owner"] == "admin"
    assert executions[0]["event"]["name"] == "schedule"
    clocked.clock.advance(300)
    await _eventually(cws, {"flow": flow["id"]}, 2)


async def test_quartz_schedule_in_a_time_zone(clocked: Clocked, cws: ClientConnection) -> None:
    definition = {**sleeper("nightly", {"seconds": 1}), "schedule": "? 0 2 ? * *", "timezone": "America/Los_Angeles"}
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    clocked.clock.advance(10 * 3600 - 1)  # 02:00 in Los Angeles is 10:00 UTC in January
    assert await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"]}) == []
    clocked.clock.advance(1)
    await _eventually(cws, {"flow": flow["id"]}, 1)


async def test_stopped_flow_is_not_scheduled(clocked: Clocked, cws: ClientConnection) -> None:
    definition = {**sleeper("stopped-schedule", {"seconds": 1}), "schedule": "* * * * *"}
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    await ok(cws, "RUN", "flows/command", objectid="stop", data={"flow_ids": [flow["id"]]})
    await _settled_feed(cws)
    clocked.clock.advance(180)
    await _settled_feed(cws)
    assert await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"]}) == []
    await ok(cws, "RUN", "flows/command", objectid="start", data={"flow_ids": [flow["id"]]})
    await _settled_feed(cws)
    clocked.clock.advance(60)
    await _eventually(cws, {"flow": flow["id"]}, 1)


async def test_scheduler_job_sends_its_envelope(clocked: Clocked, cws: ClientConnection) -> None:
    job = {
        "name": "make-device",
        "schedule": "0 * * * *",
        "envelope": {"endpoint": "inventory/device", "method": "CREATE", "data": {"name": "from-job"}},
    }
    created = await ok(cws, "CREATE", "scheduler/job", data=job)
    assert created["owner"] == "admin"
    clocked.clock.advance(3600)
    for _ in range(500):
        devices = await ok(cws, "LIST", "inventory/device", parameters={"name": "from-job"})
        if devices:
            break
        await _settled_feed(cws)
    assert len(devices) == 1
    fired = await ok(cws, "OPEN", "scheduler/job", objectid=created["id"])
    assert fired["lastRun"] == "2026-01-01T01:00:00Z"
    assert fired["lastError"] is None


async def test_scheduler_job_refuses_a_bad_cron(cws: ClientConnection) -> None:
    from tests.flowbus.helpers import fails

    bad = {"schedule": "61 * * * *", "envelope": {"endpoint": "inventory/device", "method": "LIST"}}
    answer = await fails(cws, "INVALID_DATA", "CREATE", "scheduler/job", data=bad)
    assert answer["field"] == "schedule"
    assert await ok(cws, "LIST", "scheduler/job") == []


async def _settled_feed(ws: ClientConnection) -> None:
    """Let the bus's change feed catch up (a round trip that writes and reads back)."""
    import asyncio

    await asyncio.sleep(0.1)


async def _eventually(ws: ClientConnection, parameters: dict[str, Any], count: int) -> list[dict[str, Any]]:
    import asyncio

    for _ in range(500):
        found: list[dict[str, Any]] = await ok(ws, "LIST", EXECUTION, parameters=parameters)
        if len(found) >= count:
            assert len(found) == count
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} executions of {parameters}")


async def test_a_job_is_armed_again_after_a_restart(tmp_path: Any) -> None:
    """A job in a namespace that holds nothing else still fires after the bus restarts."""
    from endpoints import create_inventory
    from endpoints.flows import ManualClock, create_app as create_flows
    from endpoints.scheduler import create_app as create_scheduler
    from flowbus.config import Settings
    from flowbus.node import build_bus
    from tests.endpoints.flows.conftest import PASSWORD
    from tests.support import rpc, ws_connect

    settings = Settings.load({"data": tmp_path, "ws_port": 0, "http_port": 0, "admin_password": PASSWORD}, env={})
    job = {
        "schedule": "0 * * * *",
        "envelope": {"endpoint": "inventory/device", "method": "CREATE", "data": {"name": "j"}},
    }
    login = {"method": "CREATE", "endpoint": "auth/token", "data": {"username": "admin", "password": PASSWORD}}
    for attempt in range(2):
        clock = ManualClock(START)
        bus, _ = build_bus(settings, [create_inventory(), create_flows(4, clock), create_scheduler(clock)])
        await bus.start()
        try:
            async with ws_connect(bus.url("websocket")) as ws:
                token = (await rpc(ws, login))["data"]["token"]
            async with ws_connect(bus.url("websocket"), token=token) as ws:
                if attempt == 0:
                    await ok(ws, "CREATE", "scheduler/job", data=job, namespace="jobs-only")
                    continue
                clock.advance(3600)
                for _ in range(500):
                    devices = await ok(ws, "LIST", "inventory/device", namespace="jobs-only")
                    if devices:
                        break
                    await _settled_feed(ws)
                assert [d["name"] for d in devices] == ["j"]
        finally:
            await bus.stop()


async def test_what_any_namespace_holds_is_picked_up_after_a_restart(tmp_path: Any) -> None:
    """After a restart, the engine finds a waiting execution in a namespace that holds no flow any
    more, and the schedules find a scheduled flow in another: the store says which namespaces
    hold executions and flows; nothing keeps a list of namespaces beside them."""
    from endpoints import create_inventory
    from endpoints.flows import ManualClock, create_app as create_flows
    from endpoints.scheduler import create_app as create_scheduler
    from flowbus.config import Settings
    from flowbus.node import build_bus
    from tests.endpoints.flows.conftest import PASSWORD
    from tests.support import rpc, ws_connect

    settings = Settings.load({"data": tmp_path, "ws_port": 0, "http_port": 0, "admin_password": PASSWORD}, env={})
    hourly = {"name": "hourly", "startState": "end", "states": {"end": {"action": "end"}}, "schedule": "0 * * * *"}
    login = {"method": "CREATE", "endpoint": "auth/token", "data": {"username": "admin", "password": PASSWORD}}
    waiting: dict[str, Any] = {}
    for attempt in range(2):
        clock = ManualClock(START)
        bus, _ = build_bus(settings, [create_inventory(), create_flows(4, clock), create_scheduler(clock)])
        await bus.start()
        try:
            async with ws_connect(bus.url("websocket")) as ws:
                token = (await rpc(ws, login))["data"]["token"]
            async with ws_connect(bus.url("websocket"), token=token) as ws:
                if attempt == 0:
                    flow = await ok(ws, "CREATE", FLOW, data=sleeper("nap", {"seconds": 600}), namespace="orphans")
                    started = await ok(ws, "RUN", FLOW, objectid=flow["id"], namespace="orphans")
                    waiting = await settle(ws, started["id"], "orphans")
                    assert waiting["status"] == "WAITING_UNTIL"
                    await ok(ws, "DELETE", FLOW, objectid=flow["id"], namespace="orphans")
                    await ok(ws, "CREATE", FLOW, data=hourly, namespace="scheduled")
                    continue
                clock.advance(3600)
                for _ in range(500):
                    woke = await ok(ws, "OPEN", EXECUTION, objectid=waiting["id"], namespace="orphans")
                    fired = await ok(ws, "LIST", EXECUTION, namespace="scheduled")
                    if woke["status"] == "SUCCESS" and fired:
                        break
                    await _settled_feed(ws)
                assert (woke["status"], [f["flowName"] for f in fired]) == ("SUCCESS", ["hourly"])
        finally:
            await bus.stop()


async def _claims(clocked: Clocked, collection: str) -> list[dict[str, Any]]:
    from flowbus import Query

    found, _ = await clocked.bus.store.query(collection, "", Query(limit=100))
    return found


async def test_a_schedule_keeps_one_claim_however_often_it_fires(clocked: Clocked, cws: ClientConnection) -> None:
    """The record that lets one process fire each firing is moved forward, not added to."""
    definition = {**sleeper("minutely", {"seconds": 1}), "schedule": "* * * * *"}
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    for count in (1, 2, 3):
        clocked.clock.advance(60)
        await _eventually(cws, {"flow": flow["id"]}, count)
    claims = await _claims(clocked, "flows/fired")
    assert [(c["id"], c["at"]) for c in claims] == [(flow["id"], "2026-01-01T00:03:00Z")]
    await ok(cws, "DELETE", FLOW, objectid=flow["id"])
    for _ in range(500):
        if not await _claims(clocked, "flows/fired"):
            break
        await _settled_feed(cws)
    assert await _claims(clocked, "flows/fired") == []


async def test_every_flow_of_a_namespace_is_reached_past_one_page(cws: ClientConnection) -> None:
    """Triggers and flow commands see every flow, not a first page of them."""
    quiet = [{**sleeper(f"quiet-{i}", {"seconds": 3600}), "triggers": ["never"]} for i in range(1000)]
    await ok(cws, "CREATE", FLOW, data=quiet)
    last = await ok(cws, "CREATE", FLOW, data={**sleeper("the-1001st", {"seconds": 3600}), "triggers": ["ping"]})
    moved = await ok(cws, "RUN", EVENT, objectid="ping", data={})
    assert len(moved["executions"]) == 1
    assert (await ok(cws, "OPEN", EXECUTION, objectid=moved["executions"][0]["contextId"]))["flow"]["id"] == last["id"]
    stopped = await ok(cws, "RUN", "flows/command", objectid="stop", data={})
    assert len(stopped["details"]) == 1001
    assert stopped["details"][-1] == {"flow_id": last["id"], "status": "stopped"}


async def test_two_buses_on_one_store_fire_each_firing_once(tmp_path: Any) -> None:
    """Both buses arm the schedule and both timers go off; one claim lands per firing."""
    from endpoints.flows import ManualClock, create_app as create_flows
    from flowbus.config import Settings
    from flowbus.node import build_bus
    from tests.endpoints.flows.conftest import PASSWORD
    from tests.support import rpc, ws_connect

    settings = Settings.load({"data": tmp_path, "ws_port": 0, "http_port": 0, "admin_password": PASSWORD}, env={})
    login = {"method": "CREATE", "endpoint": "auth/token", "data": {"username": "admin", "password": PASSWORD}}
    clocks = [ManualClock(START), ManualClock(START)]
    first, _ = build_bus(settings, [create_flows(4, clocks[0])])
    await first.start()
    try:
        async with ws_connect(first.url("websocket")) as ws:
            token = (await rpc(ws, login))["data"]["token"]
        async with ws_connect(first.url("websocket"), token=token) as ws:
            definition = {**sleeper("shared-minutely", {"seconds": 1}), "schedule": "* * * * *"}
            flow = await ok(ws, "CREATE", FLOW, data=definition)
            second, _ = build_bus(settings, [create_flows(4, clocks[1])])
            await second.start()  # arms the schedule it finds in the store
            try:
                for count in (1, 2, 3):
                    for clock in clocks:
                        clock.advance(60)
                    await _eventually(ws, {"flow": flow["id"]}, count)
                await _settled_feed(ws)
                assert len(await ok(ws, "LIST", EXECUTION, parameters={"flow": flow["id"]})) == 3
            finally:
                await second.stop()
    finally:
        await first.stop()


@pytest.mark.parametrize(
    ("seconds", "given"),
    [
        ("=input.s", 1e300),
        ("=input.s", -5),
        ("=input.s", "soon"),
        ("=sum(input.s)", [1e308, 1e308]),  # infinity
        ("=input.s", 366 * 86400 + 1),
    ],
    ids=["huge", "negative", "not-a-number", "infinite", "past-the-bound"],
)
async def test_a_wait_for_a_duration_out_of_bounds_is_the_states_error(
    cws: ClientConnection, seconds: str, given: Any
) -> None:
    definition = sleeper(unique("bad-nap"), {"seconds": seconds})
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"s": given})
    done = await settle(cws, started["id"])
    assert (done["status"], done["currentState"]) == ("ERROR", "nap")
    assert "'seconds' must be a number of seconds from 0 to 31622400" in done["error"]
    assert "internal error" not in done["error"]

    definition["name"] = unique("bad-nap-caught")
    definition["states"]["nap"]["transitions"].append({"on": "error", "to": "caught"})
    definition["states"]["caught"] = {"action": "end", "output": "caught"}
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"], data={"s": given})
    done = await settle(cws, started["id"])
    assert (done["status"], done["output"]) == ("SUCCESS", "caught")


async def test_durations_stored_before_the_bound_end_in_a_clear_error(clocked: Clocked, cws: ClientConnection) -> None:
    """A flow stored before the bound existed (written here straight to the store) runs; a
    duration beyond the bound is its state's error when evaluated, never an internal error."""
    from endpoints.flows.model import FLOWS, no_text

    for wait in ({"seconds": 1e300}, {"event": "go", "timeout": 1e300}):
        name = unique("stored")
        flow = {**sleeper(name, wait), "id": name, "owner": "admin", "state": "running"}
        await clocked.bus.store.insert(FLOWS, "", flow, no_text)
        await clocked.bus.store.insert("flows/name", "", {"id": name, "flow": name}, no_text)
        started = await ok(cws, "RUN", FLOW, objectid=name)
        done = await settle(cws, started["id"])
        assert (done["status"], done["currentState"]) == ("ERROR", "nap")
        assert "must be a number of seconds" in done["error"] and "internal error" not in done["error"]


async def test_a_schedule_that_never_fires_is_refused(cws: ClientConnection) -> None:
    namespace = unique("ns")
    answer = await fails(
        cws,
        "INVALID_DATA",
        "CREATE",
        FLOW,
        data={**sleeper("feb-30", {"seconds": 1}), "schedule": "0 0 30 2 *"},
        namespace=namespace,
    )
    assert answer["field"] == "schedule"
    assert await ok(cws, "LIST", FLOW, namespace=namespace) == []
    job = {"schedule": "0 0 0 31 4 ?", "envelope": {"endpoint": "inventory/device", "method": "LIST"}}
    answer = await fails(cws, "INVALID_DATA", "CREATE", "scheduler/job", data=job, namespace=namespace)
    assert answer["field"] == "schedule"


async def test_a_stored_schedule_that_never_fires_does_not_stop_the_bus(tmp_path: Any) -> None:
    """A flow and a job stored before schedules were bounded are not armed; the bus starts."""
    from endpoints import create_inventory
    from endpoints.flows import ManualClock, create_app as create_flows
    from endpoints.flows.model import FLOWS, no_text
    from endpoints.scheduler import create_app as create_scheduler
    from flowbus.config import Settings
    from flowbus.node import build_bus
    from tests.endpoints.flows.conftest import PASSWORD
    from tests.support import rpc, ws_connect

    settings = Settings.load({"data": tmp_path, "ws_port": 0, "http_port": 0, "admin_password": PASSWORD}, env={})
    login = {"method": "CREATE", "endpoint": "auth/token", "data": {"username": "admin", "password": PASSWORD}}
    never = {**sleeper("feb-30", {"seconds": 1}), "id": "feb-30", "schedule": "0 0 30 2 *", "state": "running"}
    job = {"id": "apr-31", "schedule": "0 0 31 4 *", "envelope": {"endpoint": "inventory/device", "method": "LIST"}}
    for attempt in range(2):
        clock = ManualClock(START)
        bus, _ = build_bus(settings, [create_inventory(), create_flows(4, clock), create_scheduler(clock)])
        await bus.start()
        try:
            if attempt == 0:
                await bus.store.insert(FLOWS, "", never, no_text)
                await bus.store.insert("scheduler/job", "", job, no_text)
                continue
            async with ws_connect(bus.url("websocket")) as ws:
                token = (await rpc(ws, login))["data"]["token"]
            async with ws_connect(bus.url("websocket"), token=token) as ws:
                flow = await ok(ws, "CREATE", FLOW, data={**sleeper("hourly", {"seconds": 1}), "schedule": "0 * * * *"})
                clock.advance(3600)
                assert len(await _eventually(ws, {"flow": flow["id"]}, 1)) == 1
                assert await ok(ws, "LIST", EXECUTION, parameters={"flow": "feb-30"}) == []
        finally:
            await bus.stop()


NEEDS_A_NAME = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}


async def _status_until(ws: ClientConnection, flow: str, key: str) -> dict[str, Any]:
    import asyncio

    for _ in range(500):
        status: dict[str, Any] = await ok(ws, "OPEN", "flows/status", objectid=flow)
        if status.get(key):
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"the status of {flow} has no {key}: {status}")


async def test_a_scheduled_flow_that_cannot_start_says_why_in_its_status(
    clocked: Clocked, cws: ClientConnection
) -> None:
    definition = {**sleeper("needs-input", {"seconds": 1}), "schedule": "*/5 * * * *", "input": NEEDS_A_NAME}
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    fresh = await ok(cws, "OPEN", "flows/status", objectid=flow["id"])
    assert (fresh["lastError"], fresh["skipped"], fresh["lastSkip"]) == (None, 0, None)
    clocked.clock.advance(300)
    status = await _status_until(cws, flow["id"], "lastError")
    assert status["lastError"]["at"] == "2026-01-01T00:05:00Z"
    assert status["lastError"]["message"].startswith("INVALID_DATA") and "name" in status["lastError"]["message"]
    listed = await ok(cws, "LIST", "flows/status")
    assert next(s for s in listed if s["flow_id"] == flow["id"])["lastError"] == status["lastError"]
    assert await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"]}) == []

    clocked.clock.advance(300)
    for _ in range(500):
        status = await ok(cws, "OPEN", "flows/status", objectid=flow["id"])
        if status["lastError"]["at"] == "2026-01-01T00:10:00Z":
            break
        await _settled_feed(cws)
    assert status["lastError"]["at"] == "2026-01-01T00:10:00Z"

    await ok(cws, "UPDATE", FLOW, objectid=flow["id"], data={"input": None})
    clocked.clock.advance(300)
    await _eventually(cws, {"flow": flow["id"]}, 1)
    for _ in range(500):
        status = await ok(cws, "OPEN", "flows/status", objectid=flow["id"])
        if status["lastError"] is None:
            break
        await _settled_feed(cws)
    assert status["lastError"] is None  # started since: cleared, as a job's lastError is


async def test_a_trigger_a_flow_refuses_is_counted_in_its_status(cws: ClientConnection) -> None:
    namespace = unique("ns")
    definition = {**sleeper("picky", {"seconds": 1}), "triggers": ["ping"], "input": NEEDS_A_NAME}
    flow = await ok(cws, "CREATE", FLOW, data=definition, namespace=namespace)
    for number in (1, 2):
        answer = await ok(cws, "RUN", EVENT, objectid="ping", data={"input": {"nom": 1}}, namespace=namespace)
        assert answer["executions"] == []
        status = await ok(cws, "OPEN", "flows/status", objectid=flow["id"], namespace=namespace)
        assert status["skipped"] == number
        assert status["lastSkip"]["event"] == "ping" and "name" in status["lastSkip"]["reason"]
        assert status["lastSkip"]["at"] == "2026-01-01T00:00:00Z"
    answer = await ok(cws, "RUN", EVENT, objectid="ping", data={"input": {"name": "n"}}, namespace=namespace)
    assert len(answer["executions"]) == 1
    status = await ok(cws, "OPEN", "flows/status", objectid=flow["id"], namespace=namespace)
    assert (status["skipped"], status["lastError"]) == (2, None)

    await ok(cws, "DELETE", FLOW, objectid=flow["id"], namespace=namespace)
    again = await ok(cws, "CREATE", FLOW, data={**definition, "id": flow["id"]}, namespace=namespace)
    status = await ok(cws, "OPEN", "flows/status", objectid=again["id"], namespace=namespace)
    assert (status["skipped"], status["lastSkip"]) == (0, None)  # what a deleted flow skipped went with it
