"""What each action does, and where failures lead: retries, proceedOnFailure, input, choice."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from endpoints.flows.durations import MAX_SECONDS
from endpoints.flows.model import FLOWS, no_text
from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW, settle
from tests.flowbus.helpers import fails, ok, unique
from tests.support import rpc


def one_state(name: str, state: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A flow whose first state is ``state``, going to ``ok`` on success and ``bad`` on error."""
    transitions = state.pop("transitions", [{"on": "success", "to": "ok"}, {"on": "error", "to": "bad"}])
    return {
        "name": name,
        "startState": "first",
        "states": {
            "first": {**state, "transitions": transitions},
            "ok": {"action": "end", "output": {"vars": "=vars"}},
            "bad": {"action": "end", "status": "ERROR", "output": "=execution.status"},
        },
        **more,
    }


async def run(ws: ClientConnection, definition: dict[str, Any], data: Any = None) -> dict[str, Any]:
    flow = await ok(ws, "CREATE", FLOW, data=definition)
    started = await ok(ws, "RUN", FLOW, objectid=flow["id"], data=data)
    return await settle(ws, started["id"])


async def test_set_and_expressions(cws: ClientConnection) -> None:
    state = {
        "action": "set",
        "vars": {"greeting": "=join(' ', ['hello', input.who])", "literal": "==not an expression"},
    }
    done = await run(cws, one_state("set", state), {"who": "ann"})
    assert done["status"] == "SUCCESS"
    assert done["output"] == {"vars": {"greeting": "hello ann", "literal": "=not an expression"}}


async def test_failing_expression_is_the_states_error(cws: ClientConnection) -> None:
    state = {"action": "set", "vars": {"n": "=abs(input.word)"}}
    done = await run(cws, one_state("bad-expr", state), {"word": "text"})
    assert (done["status"], done["currentState"]) == ("ERROR", "bad")
    assert "abs(input.word)" in next(c for c in done["stateContexts"] if c["name"] == "first")["error"]


async def test_call_error_takes_the_error_transition(cws: ClientConnection) -> None:
    state = {"action": "call", "endpoint": "inventory/device", "method": "OPEN", "objectid": "missing"}
    done = await run(cws, one_state("call-error", state))
    assert (done["status"], done["currentState"]) == ("ERROR", "bad")
    first = next(c for c in done["stateContexts"] if c["name"] == "first")
    assert first["error"].startswith("DO_NOT_EXIST")


async def test_no_matching_transition_is_the_executions_error(cws: ClientConnection) -> None:
    state: dict[str, Any] = {"action": "call", "endpoint": "inventory/device", "method": "OPEN", "objectid": "missing"}
    state["transitions"] = [{"on": "success", "to": "ok"}]
    definition = one_state("no-error-transition", state)
    del definition["states"]["bad"]
    done = await run(cws, definition)
    assert (done["status"], done["currentState"]) == ("ERROR", "first")
    assert "DO_NOT_EXIST" in done["error"]


async def test_retries_until_success(clocked: Clocked, cws: ClientConnection) -> None:
    key = unique("flaky")
    state = {
        "action": "call",
        "endpoint": "testflows/flaky",
        "method": "RUN",
        "objectid": key,
        "data": {"failures": 2},
        "retry": {"max": 3, "delay": 0},
        "result": "answer",
    }
    done = await run(cws, one_state("retry", state))
    assert done["status"] == "SUCCESS"
    assert done["vars"]["answer"] == {"tries": 3}
    assert next(c for c in done["stateContexts"] if c["name"] == "first")["attempts"] == 3


async def test_retry_delay_backs_off_on_the_clock(clocked: Clocked, cws: ClientConnection) -> None:
    key = unique("flaky")
    state: dict[str, Any] = {"action": "call", "endpoint": "testflows/flaky", "method": "RUN", "objectid": key}
    state |= {"data": {"failures": 2}, "retry": {"max": 2, "delay": 10, "backoff": 3}}
    flow = await ok(cws, "CREATE", FLOW, data=one_state("backoff", state))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    await _until_calls(clocked, key, 1)
    clocked.clock.advance(9.9)
    await _until_calls(clocked, key, 1)
    clocked.clock.advance(0.1)
    await _until_calls(clocked, key, 2)
    clocked.clock.advance(29.9)
    assert clocked.gates.calls[key] == 2
    clocked.clock.advance(0.1)
    assert (await settle(cws, started["id"]))["status"] == "SUCCESS"


async def test_retry_delays_grow_no_further_than_the_bound(clocked: Clocked, cws: ClientConnection) -> None:
    """``delay * backoff**n`` stops growing at the bound of every duration (366 days)."""
    key = unique("flaky")
    state: dict[str, Any] = {"action": "call", "endpoint": "testflows/flaky", "method": "RUN", "objectid": key}
    state |= {"data": {"failures": 2}, "retry": {"max": 2, "delay": MAX_SECONDS / 2, "backoff": 1e300}}
    flow = await ok(cws, "CREATE", FLOW, data=one_state("capped", state))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    await _until_calls(clocked, key, 1)
    clocked.clock.advance(MAX_SECONDS / 2)
    await _until_calls(clocked, key, 2)
    clocked.clock.advance(MAX_SECONDS)
    await _until_calls(clocked, key, 3)
    assert (await settle(cws, started["id"]))["status"] == "SUCCESS"


async def test_a_stored_retry_delay_beyond_the_bound_waits_the_bound(clocked: Clocked, cws: ClientConnection) -> None:
    """A flow stored before delays were bounded (written here straight to the store): its retry
    waits 366 days at most, instead of holding its slot for good."""
    key, name = unique("flaky"), unique("stored-retry")
    state: dict[str, Any] = {"action": "call", "endpoint": "testflows/flaky", "method": "RUN", "objectid": key}
    state |= {"data": {"failures": 1}, "retry": {"max": 3, "delay": 1e308}}
    flow = {**one_state(name, state), "id": name, "owner": "admin", "state": "running"}
    await clocked.bus.store.insert(FLOWS, "", flow, no_text)
    await clocked.bus.store.insert("flows/name", "", {"id": name, "flow": name}, no_text)
    started = await ok(cws, "RUN", FLOW, objectid=name)
    await _until_calls(clocked, key, 1)
    clocked.clock.advance(MAX_SECONDS)
    await _until_calls(clocked, key, 2)
    assert (await settle(cws, started["id"]))["status"] == "SUCCESS"


async def test_skip_retries(clocked: Clocked, cws: ClientConnection) -> None:
    key = unique("flaky")
    state: dict[str, Any] = {"action": "call", "endpoint": "testflows/flaky", "method": "RUN", "objectid": key}
    state |= {"data": {"failures": 1}, "retry": {"max": 3, "delay": 0}}
    done = await run(cws, one_state("skip", state, skipRetries=True))
    assert (done["status"], clocked.gates.calls[key]) == ("ERROR", 1)


async def test_proceed_on_failure_records_the_error_and_goes_on(clocked: Clocked, cws: ClientConnection) -> None:
    key = unique("flaky")
    state: dict[str, Any] = {"action": "call", "endpoint": "testflows/flaky", "method": "RUN", "objectid": key}
    state |= {"data": {"failures": 5}, "retry": {"max": 1, "delay": 0}, "proceedOnFailure": True}
    done = await run(cws, one_state("proceed", state))
    assert (done["status"], done["currentState"]) == ("SUCCESS", "ok")
    first = next(c for c in done["stateContexts"] if c["name"] == "first")
    assert first["attempts"] == 2
    assert "failure 2" in first["error"]


async def test_invoke_a_registered_function(cws: ClientConnection) -> None:
    state = {"action": "invoke", "name": "double", "args": {"value": "=input.n"}, "result": "twice"}
    done = await run(cws, one_state("invoke", state), {"n": 21})
    assert done["vars"]["twice"] == {"value": 42}


async def test_invoke_failures(cws: ClientConnection) -> None:
    exploded = await run(cws, one_state("explode", {"action": "invoke", "name": "explode"}))
    assert exploded["currentState"] == "bad"
    assert "it exploded" in next(c for c in exploded["stateContexts"] if c["name"] == "first")["error"]
    unknown = await run(cws, one_state("unknown-fn", {"action": "invoke", "name": "os.system"}))
    assert "No function named 'os.system'" in next(c for c in unknown["stateContexts"] if c["name"] == "first")["error"]


async def test_log_state(cws: ClientConnection) -> None:
    done = await run(
        cws, one_state("log", {"action": "log", "message": "=join('', ['n=', to_string(input.n)])"}), {"n": 1}
    )
    assert done["status"] == "SUCCESS"
    assert next(c for c in done["stateContexts"] if c["name"] == "first")["output"] == "n=1"


FORM = {"type": "object", "required": ["approved"], "properties": {"approved": {"type": "boolean"}}}


async def test_user_input(cws: ClientConnection) -> None:
    state = {"action": "input", "schema": FORM, "result": "form", "message": "Approve?"}
    waiting = await run(cws, one_state("ask", state))
    assert waiting["status"] == "USER_INPUT"
    progress = await ok(cws, "OPEN", EXECUTION, objectid=waiting["id"], parameters={"view": "progress"})
    assert progress["schema"] == FORM
    assert progress["message"] == "Approve?"

    refused = await fails(
        cws,
        "INVALID_DATA",
        "RUN",
        EXECUTION,
        objectid=waiting["id"],
        parameters={"operation": "input"},
        data={"approved": "yes"},
    )
    assert "approved" in refused["message"]
    unchanged = await ok(cws, "OPEN", EXECUTION, objectid=waiting["id"])
    assert (unchanged["status"], unchanged["version"]) == ("USER_INPUT", waiting["version"])

    await ok(cws, "RUN", EXECUTION, objectid=waiting["id"], parameters={"operation": "input"}, data={"approved": True})
    done = await settle(cws, waiting["id"])
    assert done["status"] == "SUCCESS"
    assert done["vars"]["form"] == {"approved": True}
    await fails(
        cws,
        "CONFLICT",
        "RUN",
        EXECUTION,
        objectid=waiting["id"],
        parameters={"operation": "input"},
        data={"approved": True},
    )


async def test_select_flow_runs_the_chosen_flow_as_a_child(cws: ClientConnection) -> None:
    child = {"name": "child-flow", "startState": "s", "states": {"s": {"action": "end", "output": {"got": "=input"}}}}
    await ok(cws, "CREATE", FLOW, data=child)
    state = {"action": "choose", "flows": ["child-flow", "other-flow"], "result": "chosen"}
    waiting = await run(cws, one_state("chooser", state))
    assert waiting["status"] == "SELECT_FLOW"
    assert waiting["flows"] == ["child-flow", "other-flow"]
    await fails(
        cws,
        "INVALID_DATA",
        "RUN",
        EXECUTION,
        objectid=waiting["id"],
        parameters={"operation": "input"},
        data={"flow": "nope"},
    )
    await ok(
        cws,
        "RUN",
        EXECUTION,
        objectid=waiting["id"],
        parameters={"operation": "input"},
        data={"flow": "child-flow", "input": 7},
    )
    done = await settle(cws, waiting["id"], until=("SUCCESS", "ERROR"))
    assert done["status"] == "SUCCESS"
    assert done["vars"]["chosen"] == {"got": 7}
    children = await ok(cws, "LIST", EXECUTION, parameters={"flowName": "child-flow"})
    assert [c["parent"] for c in children] == [waiting["id"]]


TYPED_CHILD = {
    "name": "typed-child",
    "input": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
    "startState": "s",
    "states": {"s": {"action": "end", "output": "=input"}},
}


async def choose(ws: ClientConnection, execution: str, data: Any) -> dict[str, Any]:
    message = {"method": "RUN", "endpoint": EXECUTION, "objectid": execution, "data": data}
    return await rpc(ws, {**message, "parameters": {"operation": "input"}})


async def test_a_choice_whose_input_the_child_refuses_changes_nothing(cws: ClientConnection) -> None:
    child = await ok(cws, "CREATE", FLOW, data=TYPED_CHILD)
    waiting = await run(cws, one_state("choose-typed", {"action": "choose", "flows": ["typed-child"]}))
    assert waiting["status"] == "SELECT_FLOW"

    refused = await choose(cws, waiting["id"], {"flow": "typed-child", "input": {"n": "seven"}})
    assert (refused["success"], refused["errorcode"]) == (False, "INVALID_DATA")
    unchanged = await ok(cws, "OPEN", EXECUTION, objectid=waiting["id"])
    assert (unchanged["status"], unchanged["version"], unchanged.get("flows")) == (
        "SELECT_FLOW",
        waiting["version"],
        ["typed-child"],
    )
    assert await ok(cws, "LIST", EXECUTION, parameters={"flow": child["id"]}) == []

    answered = await choose(cws, waiting["id"], {"flow": "typed-child", "input": {"n": 7}})
    assert answered["success"] is True, answered
    done = await settle(cws, waiting["id"], until=("SUCCESS", "ERROR"))
    assert (done["status"], done["currentState"]) == ("SUCCESS", "ok")


async def test_a_choice_of_a_stopped_or_disabled_flow_is_refused(cws: ClientConnection) -> None:
    child = await ok(cws, "CREATE", FLOW, data={**TYPED_CHILD, "name": "sometimes-off"})
    waiting = await run(cws, one_state("choose-off", {"action": "choose", "flows": ["sometimes-off"]}))
    answer = {"flow": "sometimes-off", "input": {"n": 2}}

    await ok(cws, "RUN", "flows/command", objectid="stop", data={"flow_ids": [child["id"]]})
    refused = await choose(cws, waiting["id"], answer)
    assert (refused["success"], refused["errorcode"]) == (False, "CONFLICT")
    assert "'sometimes-off' is stopped" in refused["message"]
    await ok(cws, "RUN", "flows/command", objectid="start", data={"flow_ids": [child["id"]]})
    await ok(cws, "UPDATE", FLOW, objectid=child["id"], data={"disabled": True})
    refused = await choose(cws, waiting["id"], answer)
    assert (refused["success"], refused["errorcode"]) == (False, "CONFLICT")
    assert "'sometimes-off' is disabled" in refused["message"]

    unchanged = await ok(cws, "OPEN", EXECUTION, objectid=waiting["id"])
    assert (unchanged["status"], unchanged["version"]) == ("SELECT_FLOW", waiting["version"])
    assert await ok(cws, "LIST", EXECUTION, parameters={"flow": child["id"]}) == []
    await ok(cws, "UPDATE", FLOW, objectid=child["id"], data={"disabled": False})
    assert (await choose(cws, waiting["id"], answer))["success"] is True
    done = await settle(cws, waiting["id"], until=("SUCCESS", "ERROR"))
    assert (done["status"], done["output"]["vars"]) == ("SUCCESS", {})


def runs_a_child(name: str, child: str, **call: Any) -> dict[str, Any]:
    """A flow whose first state RUNs the flow ``child`` with ``wait=true``; its result is the output."""
    state = {"action": "call", "endpoint": "flows/flow", "method": "RUN", "objectid": child, "result": "child"}
    return one_state(name, {**state, "parameters": {"wait": True}, **call})


def child_waiting_for(name: str, event: str) -> dict[str, Any]:
    return {
        "name": name,
        "startState": "w",
        "states": {
            "w": {"action": "wait", "event": event, "transitions": [{"on": event, "to": "e"}]},
            "e": {"action": "end", "output": {"got": "=event.input"}},
        },
    }


async def executions_of(ws: ClientConnection, flow: str, status: str) -> list[dict[str, Any]]:
    for _ in range(2000):
        found: list[dict[str, Any]] = await ok(ws, "LIST", EXECUTION, parameters={"flowName": flow})
        if found and all(e["status"] == status for e in found):
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"the executions of {flow} are not {status}: {found}")


async def test_a_call_that_runs_a_flow_and_waits_gets_its_output(cws: ClientConnection) -> None:
    child, parent = unique("child"), unique("parent")
    await ok(cws, "CREATE", FLOW, data=child_waiting_for(child, "go"))
    flow = await ok(cws, "CREATE", FLOW, data=runs_a_child(parent, child))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    [waiting] = await executions_of(cws, child, "WAITING")
    assert (await ok(cws, "OPEN", EXECUTION, objectid=started["id"]))["status"] == "RUNNING"
    await ok(cws, "RUN", "flows/event", objectid="go", data={"contextId": waiting["id"], "input": 5})
    done = await settle(cws, started["id"])
    assert (done["status"], done["currentState"]) == ("SUCCESS", "ok")
    assert done["vars"]["child"] == {"got": 5}


async def test_a_call_that_runs_a_flow_that_fails_fails_with_its_error(cws: ClientConnection) -> None:
    child, parent = unique("child"), unique("parent")
    missing = {"action": "call", "endpoint": "inventory/device", "method": "OPEN", "objectid": "missing"}
    failing = one_state(child, {**missing, "transitions": [{"on": "success", "to": "ok"}]})
    del failing["states"]["bad"]
    await ok(cws, "CREATE", FLOW, data=failing)
    flow = await ok(cws, "CREATE", FLOW, data=runs_a_child(parent, child))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    done = await settle(cws, started["id"])
    assert (done["status"], done["currentState"]) == ("ERROR", "bad")
    error = next(c for c in done["stateContexts"] if c["name"] == "first")["error"]
    assert "ended ERROR" in error and "DO_NOT_EXIST" in error
    assert "child" not in done["vars"]


async def test_a_child_still_running_when_the_call_gives_up_is_stopped(cws: ClientConnection) -> None:
    child, parent = unique("child"), unique("parent")
    await ok(cws, "CREATE", FLOW, data=child_waiting_for(child, "never"))
    definition = runs_a_child(parent, child, timeout=0.5)
    definition["states"]["first"]["transitions"].append({"on": "timeout", "to": "bad"})
    flow = await ok(cws, "CREATE", FLOW, data=definition)
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    done = await settle(cws, started["id"])
    assert (done["status"], done["currentState"]) == ("ERROR", "bad")
    assert [e["status"] for e in await ok(cws, "LIST", EXECUTION, parameters={"flowName": child})] == ["CANCELED"]


async def test_a_hard_stop_of_the_caller_stops_the_child(cws: ClientConnection) -> None:
    child, parent = unique("child"), unique("parent")
    await ok(cws, "CREATE", FLOW, data=child_waiting_for(child, "never"))
    flow = await ok(cws, "CREATE", FLOW, data=runs_a_child(parent, child))
    started = await ok(cws, "RUN", FLOW, objectid=flow["id"])
    await executions_of(cws, child, "WAITING")
    await ok(cws, "UPDATE", EXECUTION, objectid=started["id"], data={"command": "stop", "type": 1})
    await executions_of(cws, child, "CANCELED")


async def _until_calls(clocked: Clocked, key: str, count: int) -> None:
    for _ in range(500):
        if clocked.gates.calls.get(key, 0) >= count:
            assert clocked.gates.calls[key] == count
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} called {clocked.gates.calls.get(key, 0)} times, not {count}")
