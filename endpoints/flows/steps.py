"""What a state's run changes in an execution record: pure functions of the record, the
definition, the state's outcome and the time.

The runner (:mod:`endpoints.flows.runner`) commits what these answer; nothing here reads the
store, the clock or the bus.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from endpoints.flows.definition import Definition, StateSpec
from endpoints.flows.expressions import ExpressionError
from endpoints.flows.model import ERROR, RUNNING
from flowbus import iso_ms, new_objectid

__all__ = [
    "HISTORY",
    "Outcome",
    "context_of",
    "definition_data",
    "failed",
    "new_record",
    "recorded",
    "resumed",
    "same_place",
    "taken",
    "transition",
]

HISTORY = 1000
"""The latest entries of ``stateContexts``, ``executionHistory`` and ``report`` an execution keeps."""


class Outcome:
    """How a state's work ended: ``on`` is the transition's trigger (``success``, ``error``,
    ``timeout`` or an event name); ``wait`` a status to wait in instead."""

    __slots__ = ("attempts", "error", "input", "on", "result", "wait", "waiting")

    def __init__(self, on: str = "success", result: Any = None, error: str | None = None) -> None:
        self.on = on
        self.result = result
        self.error = error
        self.wait: str | None = None
        self.waiting: dict[str, Any] = {}
        self.attempts = 1
        self.input: Any = None


def new_record(
    flow: dict[str, Any],
    revision: str,
    definition: Definition,
    start: str,
    owner: str,
    data: Any,
    tags: Iterable[str],
    event: dict[str, Any] | None,
    parent: str | None,
    now: float,
) -> dict[str, Any]:
    """The record of an execution of ``flow`` about to start in state ``start`` (no status yet)."""
    message = message_of(definition.states[start], {})
    return {
        "id": new_objectid(),
        "flow": {"id": flow["id"], "name": flow.get("name")},
        "flowId": flow["id"],
        "flowName": flow.get("name"),
        "revision": revision,
        "currentState": start,
        "startState": start,
        "waiting": False,
        "nextRun": None,
        "deadline": None,
        "percentage": 0,
        "message": message,
        "input": data,
        "output": None,
        "vars": {},
        "event": event,
        "tags": list(dict.fromkeys(tags)),
        "stateContexts": [],
        "executionHistory": [history_entry(definition, flow.get("name"), start)],
        "report": [],
        "stages": [stage(start, message, now)],
        "owner": owner,
        "modifiedBy": owner,
        "parent": parent,
        "child": None,
        "error": None,
        "started": iso_ms(now),
        "ended": None,
    }


def transition(
    definition: Definition,
    state: StateSpec,
    record: dict[str, Any],
    outcome: Outcome,
    vars_: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    """The changes that take the transition of ``state`` on ``outcome``: into the next state,
    or to ERROR when no transition matches (or its condition fails)."""
    context = context_of(record | {"vars": vars_}, state.name)
    try:
        target = next_state(state, outcome.on, context)
    except ExpressionError as exc:
        return failed(str(exc), now)
    if target is None:
        reason = outcome.error or f"state {state.name!r} has no transition on {outcome.on!r}"
        return failed(reason, now)
    return entered(definition, record, target, context, now)


def resumed(
    definition: Definition,
    state: StateSpec,
    record: dict[str, Any],
    on: str,
    event: dict[str, Any] | None,
    result: Any,
    now: float,
) -> dict[str, Any]:
    """The changes that move a waiting execution on ``on`` (an event name, ``success``,
    ``timeout``): the wait is recorded as the state's run, and its transition taken."""
    outcome = Outcome(on, result=result)
    base = dict(record)
    if event is not None:
        base["event"] = event
    changes = recorded(definition, state, base, outcome, now, now)
    moved = transition(definition, state, base, outcome, changes.get("vars", record["vars"]), now)
    changes = taken(changes, moved, on, now)
    changes |= {"waiting": False, "waitEvent": None, "deadline": None, "nextRun": None}
    changes |= {"schema": None, "model": None, "form": None, "choices": None, "child": None}
    if event is not None:
        changes["event"] = event
    return changes


def definition_data(flow: dict[str, Any]) -> dict[str, Any]:
    """A flow's definition without what the bus keeps beside it."""
    return {k: v for k, v in flow.items() if k not in ("id", "created", "updated", "version", "owner", "state")}


def context_of(record: dict[str, Any], state: str) -> dict[str, Any]:
    """What a state's expressions see: ``{input, vars, state, event, execution}``."""
    return {
        "input": record.get("input"),
        "vars": record.get("vars") or {},
        "state": {"name": state},
        "event": record.get("event"),
        "execution": {
            "id": record.get("id"),
            "flowName": record.get("flowName"),
            "tags": record.get("tags") or [],
            "status": record.get("status"),
        },
    }


def message_of(state: StateSpec, context: dict[str, Any]) -> str:
    if state.message is None:
        return f"Running {state.name}"
    try:
        value = state.message.evaluate(context)
    except ExpressionError:
        return f"Running {state.name}"
    return str(value)


def history_entry(definition: Definition, flow_name: Any, state: str) -> dict[str, Any]:
    return {"flowName": flow_name, "stateName": state, "stateIndex": definition.order.index(state)}


def stage(name: str, message: str, now: float) -> dict[str, Any]:
    """An entry of ``stages``: a state the execution entered, the message it showed, and when
    it was entered and left (``ended`` is None while it runs or waits, or if it was cut short)."""
    return {"name": name, "message": message, "started": iso_ms(now), "ended": None}


def stages_closed(record: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The record's ``stages`` with the latest ended at ``now``, if it has not ended yet."""
    stages = list(record.get("stages") or [])
    if stages and stages[-1].get("ended") is None:
        stages[-1] = {**stages[-1], "ended": iso_ms(now)}
    return stages


def next_state(state: StateSpec, on: str, context: dict[str, Any]) -> str | None:
    for transition in state.transitions:
        if transition.on != on:
            continue
        if transition.condition is None or transition.condition.evaluate(context):
            return transition.to
    return None


def recorded(
    definition: Definition, state: StateSpec, record: dict[str, Any], outcome: Outcome, started: float, now: float
) -> dict[str, Any]:
    """What a state's run adds to the record: its context, its report line, its result's variable."""
    changes: dict[str, Any] = {}
    result_name = state.spec.get("result")
    vars_ = record.get("vars") or {}
    if state.action == "set" and outcome.on == "success" and isinstance(outcome.result, dict):
        changes["vars"] = vars_ | outcome.result
    elif result_name and outcome.on != "error" and outcome.on != "wait":
        changes["vars"] = vars_ | {result_name: outcome.result}
    if outcome.on == "wait":
        return changes | {"message": message_of(state, context_of(record, state.name))}
    context = {
        "name": state.name,
        "input": outcome.input,
        "output": outcome.result if outcome.on != "error" else None,
        "transitionContexts": [],
        "attempts": outcome.attempts,
        "started": iso_ms(started),
        "ended": iso_ms(now),
        "error": outcome.error,
    }
    line = {
        "state": state.name,
        "action": state.action,
        "started": iso_ms(started),
        "ms": round((now - started) * 1000, 3),
        "result": "error" if outcome.error else outcome.on,
    }
    changes["stateContexts"] = [*record.get("stateContexts", [])[-HISTORY + 1 :], context]
    changes["report"] = [*record.get("report", [])[-HISTORY + 1 :], line]
    changes["stages"] = stages_closed(record, now)
    return changes


def entered(
    definition: Definition, record: dict[str, Any], target: str, context: dict[str, Any], now: float
) -> dict[str, Any]:
    """The changes that move an execution into state ``target``."""
    states = definition.states
    history = [
        *record.get("executionHistory", [])[-HISTORY + 1 :],
        history_entry(definition, record.get("flowName"), target),
    ]
    visited = {entry["stateName"] for entry in history}
    percentage = min(99, round(100 * len(visited) / max(1, len(states))))
    message = message_of(states[target], context)
    changes: dict[str, Any] = {
        "status": RUNNING,
        "currentState": target,
        "executionHistory": history,
        "percentage": percentage,
        "message": message,
        "stages": [*stages_closed(record, now)[-HISTORY + 1 :], stage(target, message, now)],
    }
    return changes


def taken(changes: dict[str, Any], moved: dict[str, Any], on: str, now: float) -> dict[str, Any]:
    """A state's changes and where it led; the transition taken goes in the state's context."""
    contexts = changes.get("stateContexts")
    target = moved.get("currentState")
    if contexts and target is not None:
        contexts[-1]["transitionContexts"] = [{"on": on, "to": target, "at": iso_ms(now)}]
    return changes | moved


def failed(reason: str, now: float) -> dict[str, Any]:
    """The changes that end an execution in ERROR for ``reason``."""
    return {
        "status": ERROR,
        "error": reason,
        "waiting": False,
        "ended": iso_ms(now),
        "message": reason,
        "percentage": 100,
    }


def same_place(fresh: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether ``fresh`` stands where ``record`` stood (only tags or a command changed since)."""
    return (
        fresh["status"] == record["status"]
        and fresh.get("currentState") == record.get("currentState")
        and len(fresh.get("executionHistory") or []) == len(record.get("executionHistory") or [])
    )
