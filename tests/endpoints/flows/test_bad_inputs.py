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

import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EXECUTION, FLOW

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
