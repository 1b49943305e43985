"""Flow definitions: their shape, their validation, and the compiled form the engine runs.

A definition (an object of ``flows/flow``) is a state machine::

    {"name": "device-approval", "startState": "create", "input": {JSON Schema},
     "states": {"create": {"action": "call", ..., "transitions": [{"on": "success", "to": "approval"}]},
                "done": {"action": "end", "output": {"id": "=vars.device.id"}}}}

FLOW_FIELDS, the top-level fields (others are kept as they are):

- ``name``: required, a string of 1-256 characters.
- ``description``: a string. ``tags``: an array of strings.
- ``disabled``: bool (false). ``skipRetries``: bool; each state runs once, whatever its ``retry``.
- ``input``: a JSON Schema (draft 2020-12) of the execution's input.
- ``startState``: required, the name of a state. ``states``: required, a non-empty object of states by name.
- ``triggers``: an array of event names that start an execution.
- ``schedule``: a cron expression (see :mod:`endpoints.flows.schedule`); ``timezone``: its IANA zone ("UTC").
- ``onCrash``: ``"resume"`` (the default: go on from the last committed state) or ``"interrupt"``.

STATE_FIELDS, common to every state:

- ``action``: required, one of :data:`ACTIONS`.
- ``transitions``: an array of ``{"on": "success" | "error" | "timeout" | <event name>, "to": <state>,
  "if"?: "=<expression>"}``; required (non-empty) for every state but ``end``, refused on ``end``.
- ``timeout``: seconds > 0, at most :data:`~endpoints.flows.durations.MAX_SECONDS`.
  ``retry``: ``{"max": int >= 0 (0), "delay": seconds from 0 to the bound (1), "backoff": >= 1 (2)}``;
  the delays grow by ``backoff`` up to the bound, and stay there.
- ``proceedOnFailure``: bool. ``message``: a string, may be an expression.

Per action: ``call`` (``endpoint``, ``method`` of :data:`METHODS` in any case, stored upper case;
``objectid``, ``data``, ``parameters``, ``namespace``, ``result``); ``set`` (``vars``); ``wait``
(exactly one of ``event``, ``seconds`` from 0 to the bound, ``until`` an ISO 8601 time; the last
two may be expressions); ``input`` (``schema``, ``model`` (the form's first values, may be an
expression), ``form`` (an array, the form's layout), ``result``); ``choose`` (``flows``, ``result``); ``log``
(``message``, ``level`` of :data:`LEVELS`); ``invoke`` (``name``, ``args``, ``result``); ``end``
(``output``, ``status`` SUCCESS or ERROR).

A flow of an integration platform (integrator.io) names its exports and imports (``_exportId``,
``_importId``, ``pageGenerators``, ``pageProcessors``) instead of states: such a flow may leave out
both ``startState`` and ``states``. It is stored as it is and checked like any other, but it runs
nothing here (:func:`runnable`): RUN answers CONFLICT saying so (:func:`not_runnable`), and its
schedule and triggers start nothing. Give it states and it runs.

Values are literal, or ``=`` expressions (:mod:`endpoints.flows.expressions`).
:func:`validate_definition` refuses a definition with INVALID_DATA naming the fault and its
field (``states.approval.transitions[1].to``): no or an unknown start state, a transition to an
unknown state, an unreachable state, an unknown action, a bad expression, a bad cron or time
zone, a bad ``input`` schema, a field of the wrong type.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from endpoints.flows.durations import MAX_SECONDS, within_bound
from endpoints.flows.expressions import ExpressionError, Value, compile_value
from endpoints.flows.schedule import Schedule, zone
from flowbus import Conflict, InvalidData, Schema

__all__ = [
    "ACTIONS",
    "LEVELS",
    "METHODS",
    "Definition",
    "Retry",
    "StateSpec",
    "Transition",
    "not_runnable",
    "order_of_states",
    "runnable",
    "validate_definition",
]

ACTIONS = ("call", "set", "wait", "input", "choose", "log", "invoke", "end")
METHODS = ("LIST", "OPEN", "CREATE", "UPDATE", "DELETE", "INDEX", "RUN")
_EVALUATED = {
    "call": ("endpoint", "method", "objectid", "data", "parameters", "namespace"),
    "set": ("vars",),
    "wait": ("event", "seconds", "until"),
    "input": ("model",),
    "choose": (),
    "log": ("message",),
    "invoke": ("args",),
    "end": ("output",),
}
_REQUIRED = {
    "call": ("endpoint", "method"),
    "set": ("vars",),
    "input": ("schema",),
    "choose": ("flows",),
    "log": ("message",),
    "invoke": ("name",),
}
LEVELS = ("debug", "info", "warning", "error")
_PARTS = ("_exportId", "_importId", "pageGenerators", "pageProcessors")
"""The fields of a flow that name an integration platform's exports and imports."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A way out of a state: on an outcome or an event, to a state, if the condition holds."""

    on: str
    to: str
    condition: Value | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """How often a failed state is tried again: ``max`` more times, after ``delay * backoff**n``
    seconds (at most :data:`~endpoints.flows.durations.MAX_SECONDS`)."""

    max: int = 0
    delay: float = 1.0
    backoff: float = 2.0


@dataclass(frozen=True, slots=True)
class StateSpec:
    """One state, compiled: its evaluable fields are :class:`Value` s in ``values``."""

    name: str
    action: str
    spec: dict[str, Any]
    transitions: tuple[Transition, ...]
    timeout: float | None
    retry: Retry
    proceed_on_failure: bool
    message: Value | None
    values: dict[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated definition: its data, its start, its states and their order (breadth first)."""

    data: dict[str, Any]
    start: str
    states: dict[str, StateSpec]
    order: tuple[str, ...]


def validate_definition(data: dict[str, Any], *, bounded: bool = True) -> Definition:
    """Check the whole definition and compile it.

    ``bounded``: also check its durations and schedule against the bound of
    :mod:`endpoints.flows.durations` (as CREATE and UPDATE do); the engine compiles the
    definitions it runs without it, since it checks each duration when evaluated.

    Raises:
        InvalidData: the first fault found, with its ``field``.
    """
    if not isinstance(data, dict):
        raise InvalidData("A flow definition is a JSON object")
    _check_top(data)
    if "states" not in data and "startState" not in data and any(data.get(key) for key in _PARTS):
        return Definition(data, "", {}, ())  # exports and imports only: stored, run nothing here
    states_raw = data.get("states")
    if not isinstance(states_raw, dict) or not states_raw:
        raise InvalidData("'states' is required: an object of states by name", field="states")
    start = data.get("startState")
    if not isinstance(start, str) or not start:
        raise InvalidData("'startState' is required: the name of the first state", field="startState")
    if start not in states_raw:
        raise InvalidData(f"'startState' names no state: {start!r}", field="startState")
    states = {name: _state(name, raw, states_raw) for name, raw in states_raw.items()}
    order = _reachable(start, states)
    unreachable = [name for name in states if name not in order]
    if unreachable:
        raise InvalidData(
            f"state {unreachable[0]!r} cannot be reached from {start!r}", field=f"states.{unreachable[0]}"
        )
    if bounded:
        _check_bounds(data, states)
    normalized = {**data, "states": {name: state.spec for name, state in states.items()}}
    return Definition(normalized, start, states, tuple(order))


def runnable(flow: dict[str, Any]) -> bool:
    """Whether a stored flow has states to run (a flow of exports and imports alone has none)."""
    return bool(flow.get("states"))


def not_runnable(flow: dict[str, Any]) -> Conflict:
    """The refusal of a RUN of a flow that has no states: what it names runs nowhere on this bus."""
    parts = [f"{key} {flow[key]}" for key in ("_exportId", "_importId") if isinstance(flow.get(key), str)]
    for key in ("pageGenerators", "pageProcessors"):
        steps = flow.get(key)
        for step in steps if isinstance(steps, list) else ():
            if isinstance(step, dict):
                parts += [f"{k} {step[k]}" for k in ("_exportId", "_importId") if isinstance(step.get(k), str)]
    named = list(dict.fromkeys(parts))
    what = ", ".join(named[:4]) + (", ..." if len(named) > 4 else "")
    return Conflict(
        f"The flow {str(flow.get('name'))[:256]!r} has no states to run: its exports and imports"
        f"{f' ({what})' if what else ''} name nothing runnable on this bus; give it 'startState' and 'states' to run it"
    )


def _check_bounds(data: dict[str, Any], states: dict[str, StateSpec]) -> None:
    """Literal durations within the bound; a schedule whose next firing is within it."""
    for name, state in states.items():
        where = f"states.{name}"
        if state.timeout is not None and not within_bound(state.timeout, positive=True):
            raise InvalidData(
                f"state {name!r}: 'timeout' must be a number of seconds > 0, at most {MAX_SECONDS}",
                field=f"{where}.timeout",
            )
        if not within_bound(state.retry.delay):
            raise InvalidData(
                f"state {name!r}: 'retry.delay' must be a number of seconds from 0 to {MAX_SECONDS}",
                field=f"{where}.retry.delay",
            )
        seconds = state.spec.get("seconds") if state.action == "wait" else None
        if seconds is not None and not _expression(seconds) and not within_bound(seconds):
            raise InvalidData(
                f"state {name!r}: 'seconds' must be a number of seconds from 0 to {MAX_SECONDS}",
                field=f"{where}.seconds",
            )
    if data.get("schedule") is not None:
        try:
            Schedule(data["schedule"], data.get("timezone", "UTC")).check_bound(datetime.now(UTC))
        except ValueError as exc:
            raise InvalidData(str(exc), field="schedule") from None


def order_of_states(defn: Definition) -> list[str]:
    """The states breadth first from the start state (``executionHistory.stateIndex`` is an index in it)."""
    return list(defn.order)


def _check_top(data: dict[str, Any]) -> None:
    name = data.get("name")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise InvalidData("'name' is required: a string of 1-256 characters", field="name")
    _typed(data, "description", str, "a string")
    _typed(data, "disabled", bool, "true or false")
    _typed(data, "skipRetries", bool, "true or false")
    _strings(data, "triggers")
    _strings(data, "tags")
    if data.get("onCrash", "resume") not in ("resume", "interrupt"):
        raise InvalidData("'onCrash' must be 'resume' or 'interrupt'", field="onCrash")
    if data.get("input") is not None:
        _schema(data["input"], "input")
    timezone = data.get("timezone", "UTC")
    if not isinstance(timezone, str):
        raise InvalidData("'timezone' must be an IANA time zone name", field="timezone")
    try:
        zone(timezone)
    except ValueError as exc:
        raise InvalidData(str(exc), field="timezone") from None
    if data.get("schedule") is not None:
        try:
            Schedule(data["schedule"], timezone)
        except ValueError as exc:
            raise InvalidData(str(exc), field="schedule") from None


def _typed(data: dict[str, Any], key: str, kind: type, what: str, where: str = "") -> None:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise InvalidData(f"'{key}' must be {what}", field=f"{where}{key}")


def _strings(data: dict[str, Any], key: str, where: str = "") -> None:
    value = data.get(key)
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
        raise InvalidData(f"'{key}' must be a list of names", field=f"{where}{key}")


def _schema(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise InvalidData(f"'{where}' must be a JSON Schema (an object)", field=where)
    try:
        Schema(value)
    except ValueError as exc:
        raise InvalidData(f"'{where}': {exc}", field=where) from None


def _compiled(value: Any, where: str) -> Value:
    try:
        return compile_value(value)
    except ExpressionError as exc:
        raise InvalidData(str(exc), field=where) from None


def _state(name: str, raw: Any, states: dict[str, Any]) -> StateSpec:
    where = f"states.{name}"
    if not isinstance(raw, dict):
        raise InvalidData(f"state {name!r} must be an object", field=where)
    action = raw.get("action")
    if action not in ACTIONS:
        raise InvalidData(
            f"state {name!r}: unknown action {action!r} (one of {', '.join(ACTIONS)})", field=f"{where}.action"
        )
    _check_action(name, action, raw, where)
    raw = _normalized(action, raw)
    transitions = _transitions(name, action, raw, states, where)
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise InvalidData(f"state {name!r}: 'timeout' must be a number of seconds > 0", field=f"{where}.timeout")
    _typed(raw, "proceedOnFailure", bool, "true or false", f"{where}.")
    message = raw.get("message")
    if message is not None and not isinstance(message, str):
        raise InvalidData(f"state {name!r}: 'message' must be a string", field=f"{where}.message")
    values = {key: _compiled(raw[key], f"{where}.{key}") for key in _EVALUATED[action] if key in raw}
    return StateSpec(
        name,
        action,
        raw,
        transitions,
        float(timeout) if timeout is not None else None,
        _retry(raw.get("retry"), f"{where}.retry"),
        bool(raw.get("proceedOnFailure", False)),
        _compiled(message, f"{where}.message") if message is not None else None,
        values,
    )


def _normalized(action: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of the state with its literal ``method`` (call) or ``status`` (end) upper case."""
    key = {"call": "method", "end": "status"}.get(action)
    value = raw.get(key) if key else None
    if key is None or not isinstance(value, str) or value.startswith("="):
        return raw
    return {**raw, key: value.upper()}


def _check_action(name: str, action: str, raw: dict[str, Any], where: str) -> None:
    for key in _REQUIRED.get(action, ()):
        if key not in raw:
            raise InvalidData(f"state {name!r}: a {action} state needs '{key}'", field=f"{where}.{key}")
    if action == "call":
        _check_call(name, raw, where)
    elif action == "set" and not isinstance(raw["vars"], dict):
        raise InvalidData(f"state {name!r}: 'vars' must be an object", field=f"{where}.vars")
    elif action == "wait":
        _check_wait(name, raw, where)
    elif action == "input":
        _schema(raw["schema"], f"{where}.schema")
        if "form" in raw and not isinstance(raw["form"], list):
            raise InvalidData(f"state {name!r}: 'form' must be an array (a form layout)", field=f"{where}.form")
    elif action == "choose":
        _strings(raw, "flows", f"{where}.")
        if not raw["flows"]:
            raise InvalidData(f"state {name!r}: 'flows' must name at least one flow", field=f"{where}.flows")
    elif action == "log" and raw.get("level", "info") not in LEVELS:
        raise InvalidData(f"state {name!r}: 'level' must be one of {', '.join(LEVELS)}", field=f"{where}.level")
    elif action == "invoke":
        _typed(raw, "name", str, "the name of a registered function", f"{where}.")
    elif action == "end" and str(raw.get("status", "SUCCESS")).upper() not in ("SUCCESS", "ERROR"):
        raise InvalidData(f"state {name!r}: 'status' must be SUCCESS or ERROR", field=f"{where}.status")
    result = raw.get("result")
    if result is not None and (not isinstance(result, str) or not result):
        raise InvalidData(f"state {name!r}: 'result' must be a variable name", field=f"{where}.result")


def _check_call(name: str, raw: dict[str, Any], where: str) -> None:
    method = raw["method"]
    if not (_expression(method) or (isinstance(method, str) and method.upper() in METHODS)):
        raise InvalidData(f"state {name!r}: 'method' must be one of {', '.join(METHODS)}", field=f"{where}.method")
    if not isinstance(raw["endpoint"], str) or not raw["endpoint"]:
        raise InvalidData(f"state {name!r}: 'endpoint' must be an endpoint name", field=f"{where}.endpoint")
    for key, kind, what in (
        ("objectid", str, "a string"),
        ("namespace", str, "a string"),
        ("parameters", dict, "an object"),
    ):
        if raw.get(key) is not None and not _expression(raw[key]) and not isinstance(raw[key], kind):
            raise InvalidData(f"state {name!r}: '{key}' must be {what} or an expression", field=f"{where}.{key}")


def _check_wait(name: str, raw: dict[str, Any], where: str) -> None:
    given = [key for key in ("event", "seconds", "until") if key in raw]
    if len(given) != 1:
        raise InvalidData(f"state {name!r}: a wait state takes one of 'event', 'seconds' or 'until'", field=where)
    _typed(raw, "event", str, "an event name", f"{where}.")
    if "seconds" in raw and not _expression(raw["seconds"]) and not _seconds(raw["seconds"]):
        raise InvalidData(f"state {name!r}: 'seconds' must be a number >= 0 or an expression", field=f"{where}.seconds")
    if "until" in raw and not _expression(raw["until"]) and not _moment(raw["until"]):
        raise InvalidData(f"state {name!r}: 'until' must be an ISO 8601 time or an expression", field=f"{where}.until")


def _expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("=") and not value.startswith("==")


def _seconds(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value >= 0


def _moment(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _transitions(
    name: str, action: str, raw: dict[str, Any], states: dict[str, Any], where: str
) -> tuple[Transition, ...]:
    given = raw.get("transitions", [])
    if not isinstance(given, list):
        raise InvalidData(f"state {name!r}: 'transitions' must be an array", field=f"{where}.transitions")
    if action == "end":
        if given:
            raise InvalidData(f"state {name!r}: an end state has no transitions", field=f"{where}.transitions")
        return ()
    if not given:
        raise InvalidData(f"state {name!r} has no transitions and is not an end state", field=f"{where}.transitions")
    return tuple(_transition(name, i, t, states, f"{where}.transitions[{i}]") for i, t in enumerate(given))


def _transition(name: str, index: int, raw: Any, states: dict[str, Any], where: str) -> Transition:
    if not isinstance(raw, dict):
        raise InvalidData(f"state {name!r}: each transition is an object with 'on' and 'to'", field=where)
    on, to, condition = raw.get("on"), raw.get("to"), raw.get("if")
    if not isinstance(on, str) or not on:
        raise InvalidData(
            f"state {name!r}: transition {index} needs 'on' (success, error, timeout or an event)", field=f"{where}.on"
        )
    if not isinstance(to, str) or to not in states:
        raise InvalidData(f"state {name!r}: transition {index} goes to an unknown state {to!r}", field=f"{where}.to")
    if condition is not None and not _expression(condition):
        raise InvalidData(
            f"state {name!r}: transition {index}'s 'if' must be an expression ('=...')", field=f"{where}.if"
        )
    compiled = _compiled(condition, f"{where}.if") if condition is not None else None
    return Transition(on, to, compiled)


def _retry(raw: Any, where: str) -> Retry:
    if raw is None:
        return Retry()
    if not isinstance(raw, dict):
        raise InvalidData("'retry' must be an object: {max, delay, backoff}", field=where)
    retries, delay, backoff = raw.get("max", 0), raw.get("delay", 1), raw.get("backoff", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise InvalidData("'retry.max' must be an integer from 0 to 100", field=f"{where}.max")
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise InvalidData("'retry.delay' must be a number of seconds >= 0", field=f"{where}.delay")
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 1:
        raise InvalidData("'retry.backoff' must be a number >= 1", field=f"{where}.backoff")
    return Retry(retries, float(delay), float(backoff))


def _reachable(start: str, states: dict[str, StateSpec]) -> list[str]:
    order, queue = [start], deque([start])
    while queue:
        for transition in states[queue.popleft()].transitions:
            if transition.to not in order:
                order.append(transition.to)
                queue.append(transition.to)
    return order
