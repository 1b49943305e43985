"""Bad input, from outside, never breaks the flow engine.

Whatever a caller sends (ids, parameters, definitions, events, commands, answers) and whatever
values a running flow meets, every refusal is an error envelope with a client's errorcode, every
execution ends in a documented status with a readable message or keeps waiting, none stays
RUNNING once the clock has passed every bound, and the bus logs no traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EVENT, EXECUTION, FLOW

CLIENT_ERRORS = {
    "INVALID_REQUEST",
    "MISSING_OBJECTID",
    "INVALID_DATA",
    "NO_SUCH_ENDPOINT",
    "METHOD_NOT_SUPPORTED",
    "DO_NOT_EXIST",
    "CONFLICT",
    "PERMISSION_DENIED",
}
ENDED = ("SUCCESS", "ERROR", "CANCELED", "INTERRUPTED")
WAITS = ("WAITING", "WAITING_UNTIL", "USER_INPUT", "SELECT_FLOW", "PAUSED")
_requests = itertools.count()


async def ask(ws: ClientConnection, method: str, endpoint: str, **fields: Any) -> dict[str, Any]:
    """One call with its own requestid; answers of earlier calls that come late are passed over."""
    requestid = f"bad-{next(_requests)}"
    message = {"method": method, "endpoint": endpoint, "requestid": requestid, **fields}
    await ws.send(json.dumps(message))
    while True:
        answer: dict[str, Any] = orjson.loads(await ws.recv())
        if answer.get("requestid") == requestid and answer.get("status") == 0:
            return answer


def refused_cleanly(answer: dict[str, Any], what: str) -> None:
    """An answer is a success, or an error envelope with a client's errorcode and no traceback."""
    assert "Traceback" not in json.dumps(answer), (what, answer)
    if not answer["success"]:
        assert answer["errorcode"] in CLIENT_ERRORS, (what, answer)
        assert isinstance(answer["message"], str) and answer["message"], (what, answer)


async def good(ws: ClientConnection, method: str, endpoint: str, **fields: Any) -> Any:
    answer = await ask(ws, method, endpoint, **fields)
    assert answer["success"] is True, answer
    return answer["data"]


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The bus logged no exception and no internal error."""
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "internal error" not in record.getMessage(), record.getMessage()


async def still(ws: ClientConnection, execution: str) -> dict[str, Any]:
    """OPEN the execution once it is neither RUNNING nor QUEUED (the engine has had its turn)."""
    for _ in range(500):
        record: dict[str, Any] = await good(ws, "OPEN", EXECUTION, objectid=execution)
        if record["status"] not in ("RUNNING", "QUEUED"):
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"execution {execution} stays {record['status']}")


def ended_well(record: dict[str, Any], what: str) -> None:
    """An execution ended in a documented status, an ERROR with a readable message, or waits."""
    assert record["status"] in ENDED + WAITS, (what, record["status"])
    if record["status"] == "ERROR" and record["currentState"] != "failed":
        assert isinstance(record["error"], str) and record["error"], (what, record)
    assert "internal error" not in str(record.get("error")), (what, record["error"])


def one_state(name: str, state: dict[str, Any]) -> dict[str, Any]:
    """A flow whose start state is ``state``; success and events lead to ``done``, the rest to ``failed``."""
    transitions = [{"on": "success", "to": "done"}, {"on": "error", "to": "failed"}, {"on": "timeout", "to": "failed"}]
    if state["action"] == "wait" and "event" in state:
        transitions.append({"on": "go", "to": "done"})
    return {
        "name": name,
        "startState": "s",
        "states": {
            "s": {**state, "transitions": transitions},
            "done": {"action": "end", "output": "=vars"},
            "failed": {"action": "end", "status": "ERROR"},
        },
    }


ODD_VALUES: list[Any] = [None, -1, 1e308, 2**63, True, "NaN", "x", [], [1, "a"], {}, {"a": {"b": 1}}]
"""Values an execution's input gives the expressions of its states."""


async def run_each(
    clocked: Clocked, ws: ClientConnection, state: dict[str, Any], inputs: list[Any], name: str
) -> list[tuple[Any, dict[str, Any]]]:
    """Start the one-state flow of ``state`` once per input (as ``input.v``), move the clock past every bound,
    and answer each input with its execution as it then is."""
    flow = await good(ws, "CREATE", FLOW, data=one_state(name, state))
    started: list[tuple[Any, str]] = []
    for value in inputs:
        answer = await ask(ws, "RUN", FLOW, objectid=flow["id"], data={"v": value})
        refused_cleanly(answer, f"RUN with {value!r}")
        if answer["success"]:
            started.append((value, answer["data"]["id"]))
    for _, execution in started:
        await still(ws, execution)
    clocked.clock.advance(400 * 86400)
    return [(value, await still(ws, execution)) for value, execution in started]


@pytest.mark.parametrize(
    "state",
    [
        {"action": "call", "endpoint": "inventory/device", "method": "CREATE", "data": "=input.v"},
        {"action": "call", "endpoint": "inventory/device", "method": "LIST", "parameters": "=input.v"},
        {"action": "call", "endpoint": "inventory/device", "method": "LIST", "namespace": "=input.v"},
        {"action": "call", "endpoint": "flows/flow", "method": "RUN", "objectid": "child", "parameters": "=input.v"},
        {"action": "call", "endpoint": "flows/flow", "method": "RUN", "objectid": "child", "data": "=input.v"},
    ],
    ids=["data", "parameters", "namespace", "run-parameters", "run-data"],
)
async def test_a_call_state_given_values_of_the_wrong_type_fails_as_a_refused_call(
    clocked: Clocked, cws: ClientConnection, caplog: pytest.LogCaptureFixture, state: dict[str, Any]
) -> None:
    caplog.set_level(logging.INFO)
    await good(cws, "CREATE", FLOW, data={"name": "child", "startState": "e", "states": {"e": {"action": "end"}}})
    for value, record in await run_each(clocked, cws, state, ODD_VALUES, "caller"):
        ended_well(record, repr(value))
        if record["status"] == "ERROR":
            context = next(c for c in record["stateContexts"] if c["name"] == "s")
            assert context["error"].startswith(("INVALID_REQUEST", "DO_NOT_EXIST", "INVALID_DATA")), context
    no_traceback(caplog)


@pytest.mark.parametrize(
    "expression", ["=sum(input.v)", "={a: [sum(input.v)]}", "=to_number(join('', ['1', to_string(max(input.v))]))"]
)
async def test_an_expression_whose_value_passes_64_bits_is_the_states_error(
    clocked: Clocked, cws: ClientConnection, caplog: pytest.LogCaptureFixture, expression: str
) -> None:
    caplog.set_level(logging.INFO)
    lists = [[2**63, 2**63], [-(2**63), -1], [2**64 - 1], [1, 2]]
    results = await run_each(clocked, cws, {"action": "set", "vars": {"a": expression}}, lists, "sums")
    for value, record in results:
        ended_well(record, repr(value))
        made = int(f"1{max(value)}") if "max" in expression and max(value) >= 0 else sum(value)
        if -(2**63) <= made < 2**64 or "max" in expression and max(value) < 0:
            assert record["status"] == "SUCCESS", record
            continue
        context = next(c for c in record["stateContexts"] if c["name"] == "s")
        assert "does not fit in 64 bits" in context["error"], (value, context)
    no_traceback(caplog)


def every_status_flow() -> dict[str, Any]:
    """A flow with a state for each way of waiting; ``parameters.startState`` starts at any of them."""
    on = [{"on": "error", "to": "failed"}, {"on": "timeout", "to": "failed"}]
    return {
        "name": "every",
        "startState": "gate",
        "input": {"type": "object"},
        "states": {
            "gate": {
                "action": "call",
                "endpoint": "testflows/gate",
                "method": "RUN",
                "objectid": "=input.gate",
                "transitions": [{"on": "success", "to": "wait"}, *on],
            },
            "wait": {"action": "wait", "event": "go", "timeout": 600, "transitions": [{"on": "go", "to": "nap"}, *on]},
            "nap": {"action": "wait", "seconds": 600, "transitions": [{"on": "success", "to": "ask"}, *on]},
            "ask": {
                "action": "input",
                "schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
                "timeout": 600,
                "transitions": [{"on": "success", "to": "pick"}, *on],
            },
            "pick": {
                "action": "choose",
                "flows": ["child"],
                "timeout": 600,
                "transitions": [{"on": "success", "to": "done"}, *on],
            },
            "done": {"action": "end", "output": "=vars"},
            "failed": {"action": "end", "status": "ERROR"},
        },
    }


BAD_ANSWERS: list[Any] = [
    {},
    {"n": "seven"},
    {"n": 1e308},
    {"n": 2**63},
    {"flow": 5},
    {"flow": "nope"},
    [1],
    {"flow": "child", "input": [[]]},
]
COMMANDS: list[Any] = [
    {"command": "pause"},
    {"command": "resume"},
    {"command": "stop", "type": "2"},
    {"command": "stop", "type": -1},
    {"command": "stop", "type": 1e308},
    {"command": "stop", "type": [1]},
    {"command": "halt"},
    {"command": 1},
    {"command": None},
    {"addTags": "a"},
    {"addTags": [1, {}]},
    {"removeTags": [None]},
    {"command": "pause", "addTags": ["a"]},
    {},
]


async def statuses(clocked: Clocked, ws: ClientConnection) -> dict[str, str]:
    """One execution in each status, by status."""
    await good(ws, "CREATE", FLOW, data={"name": "child", "startState": "e", "states": {"e": {"action": "end"}}})
    flow = await good(ws, "CREATE", FLOW, data=every_status_flow())

    async def start(state: str, gate: str = "shut") -> str:
        started = await good(
            ws, "RUN", FLOW, objectid=flow["id"], data={"gate": gate}, parameters={"startState": state}
        )
        return str(started["id"])

    found: dict[str, str] = {}
    for status, state in (
        ("WAITING", "wait"),
        ("WAITING_UNTIL", "nap"),
        ("USER_INPUT", "ask"),
        ("SELECT_FLOW", "pick"),
    ):
        found[status] = await start(state)
        assert (await still(ws, found[status]))["status"] == status
    found["PAUSED"] = await start("wait")
    await still(ws, found["PAUSED"])
    await good(ws, "UPDATE", EXECUTION, objectid=found["PAUSED"], data={"command": "pause"})
    found["CANCELED"] = await start("wait")
    await still(ws, found["CANCELED"])
    await good(ws, "DELETE", EXECUTION, objectid=found["CANCELED"])
    found["SUCCESS"] = await start("done")
    found["ERROR"] = await start("failed")
    await still(ws, found["ERROR"])
    found["RUNNING"] = await start("gate")
    for gate in ("shut-2", "shut-3", "shut-4"):  # the bus runs four at once: the fifth is queued
        await start("gate", gate)
    found["QUEUED"] = await start("gate")
    for execution in found.values():
        record = await good(ws, "OPEN", EXECUTION, objectid=execution)
        assert record["status"] in found, record["status"]
    return found


async def test_events_commands_and_answers_in_every_status(
    clocked: Clocked, cws: ClientConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    found = await statuses(clocked, cws)
    for status, execution in found.items():
        record = await good(cws, "OPEN", EXECUTION, objectid=execution)
        assert record["status"] == status
        context_id = record["contextId"]
        for target in (execution, context_id, str(context_id)):
            for name in ("go", "nope"):
                for data in ({"contextId": target}, {"contextId": target, "input": [1e308, None], "tags": ["x"]}):
                    answer = await ask(cws, "RUN", EVENT, objectid=name, data=data)
                    refused_cleanly(answer, f"event {name} to {status}")
        for command in COMMANDS:
            answer = await ask(cws, "UPDATE", EXECUTION, objectid=execution, data=command)
            refused_cleanly(answer, f"{command} to {status}")
        for data in BAD_ANSWERS:
            for parameters in ({"operation": "input"}, {"operation": "input", "dataType": "XML"}, {"operation": 5}):
                answer = await ask(cws, "RUN", EXECUTION, objectid=execution, data=data, parameters=parameters)
                refused_cleanly(answer, f"answer {data} to {status}")
                assert not answer["success"], (status, data, answer)
    flow_commands: list[dict[str, Any]] = [{"type": "9"}, {"flow_ids": "every"}, {"flow_ids": [None]}]
    for command in ("stop", "pause", "resume", "start"):
        for flow_command in [*flow_commands, {"flow_ids": ["every"], "type": [0]}]:
            answer = await ask(cws, "RUN", "flows/command", objectid=command, data=flow_command)
            refused_cleanly(answer, f"{command} {flow_command}")
    for gate in ("shut", "shut-2", "shut-3", "shut-4"):
        clocked.gates.gate(gate).set()
    for _ in range(3):
        clocked.clock.advance(400 * 86400)
        for status, execution in found.items():
            record = await still(cws, execution)
            ended_well(record, f"from {status}")
    no_traceback(caplog)


BAD_IDS: list[Any] = ["", "x" * 300, "a/b", "a b", "ünï", "..", "../x", 5, 2**64 - 1, -1, 1.5, True, [], {}, "9" * 30]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(bad)[:20] for bad in BAD_IDS])
async def test_bad_ids_and_parameters_answer_client_errors(
    clocked: Clocked, cws: ClientConnection, caplog: pytest.LogCaptureFixture, bad: Any
) -> None:
    caplog.set_level(logging.INFO)
    flow = await good(cws, "CREATE", FLOW, data=every_status_flow())
    execution = (await good(cws, "RUN", FLOW, objectid=flow["id"], parameters={"startState": "wait"}))["id"]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        (method, endpoint, {"objectid": bad, "data": {"command": "pause"}})
        for method, endpoint in (
            [(method, FLOW) for method in ("OPEN", "RUN", "UPDATE", "DELETE", "INDEX")]
            + [(method, EXECUTION) for method in ("OPEN", "RUN", "UPDATE", "DELETE")]
            + [("RUN", EVENT), ("RUN", "flows/command"), ("OPEN", "flows/status")]
        )
    ]
    calls += [("RUN", EVENT, {"objectid": "go", "data": {"contextId": bad, "tags": bad, "input": bad}})]
    calls += [("RUN", EVENT, {"objectid": "go", "parameters": {"contextId": bad, "ids": bad}, "data": {}})]
    for name in ("limit", "page", "tag", "status", "flow", "createdAfter", "createdBefore", "sort", "view", "owner"):
        calls.append(("LIST", EXECUTION, {"parameters": {name: bad}}))
    for name in ("view", "state"):
        calls.append(("OPEN", EXECUTION, {"objectid": execution, "parameters": {name: bad}}))
    for name in ("operation", "startState", "tags", "wait", "dataType", "version"):
        calls.append(("RUN", FLOW, {"objectid": flow["id"], "parameters": {name: bad}, "data": {}}))
    for data in ({"command": bad}, {"command": "stop", "type": bad}, {"addTags": bad}, {"removeTags": [bad]}):
        calls.append(("UPDATE", EXECUTION, {"objectid": execution, "data": data}))
    for command in ("stop", "pause", "resume", "start"):
        calls.append(("RUN", "flows/command", {"objectid": command, "data": {"flow_ids": [bad], "type": bad}}))
    for method, endpoint, fields in calls:
        refused_cleanly(await ask(cws, method, endpoint, **fields), f"{method} {endpoint} {fields}")
    clocked.clock.advance(400 * 86400)
    ended_well(await still(cws, execution), "the flow's own execution")
    no_traceback(caplog)


WRONG_TYPES: list[Any] = [None, 1e308, -1, True, [], {}, "x", [1], {"a": {}}, "NaN", 2**63, "=nope(", "==x"]


@pytest.mark.parametrize(
    "place",
    ["name", "tags", "disabled", "input", "startState", "states", "triggers", "schedule", "timezone", "onCrash"]
    + [f"states.wait.{key}" for key in ("action", "event", "timeout", "retry", "transitions", "message")]
    + [f"states.gate.{key}" for key in ("endpoint", "method", "objectid", "result", "proceedOnFailure")]
    + [f"states.nap.{key}" for key in ("seconds", "until")]
    + [f"states.ask.{key}" for key in ("schema", "form")]
    + ["states.pick.flows", "states.failed.status", "states.wait.transitions.0.to", "states.wait.transitions.0.if"],
)
async def test_definitions_with_fields_of_wrong_types_are_refused_or_run_cleanly(
    clocked: Clocked, cws: ClientConnection, caplog: pytest.LogCaptureFixture, place: str
) -> None:
    caplog.set_level(logging.INFO)
    created = await good(cws, "CREATE", FLOW, data={**every_status_flow(), "name": "kept"})
    started: list[str] = []
    for number, value in enumerate(WRONG_TYPES):
        flow = every_status_flow()
        flow["name"] = f"wrong-{number}"
        where: Any = flow
        *path, last = place.split(".")
        for step in path:
            where = where[int(step)] if step.isdigit() else where[step]
        where[int(last) if last.isdigit() else last] = value
        answer = await ask(cws, "CREATE", FLOW, data=flow)
        refused_cleanly(answer, f"CREATE {place}={value!r}")
        if answer["success"]:
            run = await ask(cws, "RUN", FLOW, objectid=answer["data"]["id"], data={"gate": "open"})
            refused_cleanly(run, f"RUN {place}={value!r}")
            if run["success"]:
                started.append(run["data"]["id"])
        if not path:
            update = await ask(cws, "UPDATE", FLOW, objectid=created["id"], data={place: value})
            refused_cleanly(update, f"UPDATE {place}={value!r}")
    literals = [text.removeprefix("=") for text in WRONG_TYPES if isinstance(text, str)]
    for gate in ("open", *literals):  # the gates that literal objectids name are opened too
        clocked.gates.gate(gate).set()
    clocked.clock.advance(400 * 86400)
    for execution in started:
        ended_well(await still(cws, execution), place)
    no_traceback(caplog)


SURFACE_IDS = [
    "",
    "x" * 300,
    "a%2Fb",
    "a%20b",
    "%C3%BC",
    "..",
    "-1",
    "1.5",
    "1e308",
    "NaN",
    str(2**64),
    "9" * 30,
    "0x10",
]
BODIES: list[Any] = [None, 1e308, -1, True, [], "x", [1], {"a": {}}, [[]], [{}], {"input": [], "tags": 5, "event": {}}]
RAW_BODIES = [
    b"",
    b"{",
    b"<r><name>x</name></r>",
    b"<r><name><a>1</a></name></r>",
    b"<!DOCTYPE r [<!ENTITY e 'x'>]><r/>",
    b"\xff",
]


async def test_the_four_surfaces_answer_bad_requests_with_client_errors(
    clocked: Clocked, cws: ClientConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    flow = await good(cws, "CREATE", FLOW, data=every_status_flow())
    waiting = await good(cws, "RUN", FLOW, objectid=flow["id"], parameters={"startState": "wait"})
    context_id, flow_id = waiting["contextId"], flow["id"]
    requests: list[tuple[str, str, Any]] = []
    for bad in SURFACE_IDS:
        requests += [
            ("DELETE", f"/flux-api/terminate?contextId={bad}", None),
            ("POST", f"/flux-api/event?contextId={bad}", {"event": "go"}),
            ("GET", f"/flux-api/context?contextId={bad}", None),
            ("GET", f"/flux-api/context/state?contextId={context_id}&stateName={bad}", None),
            ("POST", f"/flux-api/context/tag?contextId={bad}&tag={bad}", None),
            ("GET", f"/flux-api/definition?fluxName={bad}", None),
            ("POST", f"/flux-api/execute?packageName={bad}&fluxName={bad}", {"input": {}}),
            ("GET", f"/flux-api/contexts?limit={bad}&page={bad}&tag={bad}&status={bad}", None),
            ("GET", f"/v1/flows/{bad}", None),
            ("PUT", f"/v1/flows/{bad}", {"name": "z"}),
            ("DELETE", f"/v1/flows/{bad}", None),
            ("POST", f"/v1/flows/{bad}/clone", {"name": bad}),
            ("POST", f"/v1/flows/{bad}/run", {}),
            ("GET", f"/flows/{bad}", None),
            ("PUT", f"/flows/{bad}", {"name": "z"}),
            ("DELETE", f"/flows/{bad}", None),
            ("GET", f"/flows/status/{bad}", None),
            ("PATCH", "/flows/commands", {"command": bad, "flow_ids": [bad], "type": bad}),
            ("GET", f"/api/v1/flows/executions/{bad}/progress", None),
            ("POST", f"/api/v1/flows/executions?flowId={bad}", {}),
            ("GET", f"/api/flows/flows/execution/?limit={bad}&createdAfter={bad}", None),
        ]
    for body in BODIES:
        requests += [
            ("POST", "/flux-api/execute?packageName=&fluxName=every", body),
            ("POST", f"/flux-api/event?contextId={context_id}", body),
            ("POST", "/v1/flows", body),
            ("PUT", f"/v1/flows/{flow_id}", body),
            ("POST", f"/v1/flows/{flow_id}/run", body),
            ("POST", "/flows", body),
            ("POST", "/flows", [body]),
            ("PATCH", "/flows/commands", body),
            ("PATCH", "/flows/commands", {"command": "stop", "flow_ids": body, "type": body}),
            ("POST", f"/api/v1/flows/executions?flowId={flow_id}", body),
        ]
    for raw in RAW_BODIES:
        for path in (
            "/api/v1/flows/executions?flowId=every",
            "/flux-api/execute?packageName=&fluxName=every",
            "/flows",
        ):
            requests += [("POST", path, raw)]
    headers = {"Authorization": f"Bearer {clocked.token}"}
    async with aiohttp.ClientSession(clocked.http, headers=headers) as session:
        for method, path, body in requests:
            if isinstance(body, bytes):
                sent: dict[str, Any] = {"data": body, "headers": {"Content-Type": "application/xml"}}
            else:
                sent = {} if body is None and method in ("GET", "DELETE") else {"json": body}
            async with session.request(method, path, **sent) as response:
                text = await response.text()
                assert response.status < 500, (method, path, body, response.status, text)
                assert "Traceback" not in text, (method, path, text)
    clocked.clock.advance(400 * 86400)
    ended_well(await still(cws, waiting["id"]), "the waiting execution")
    no_traceback(caplog)
