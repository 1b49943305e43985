"""One try of a state's work, by its action: a call through the dispatcher as the execution's
user, variables set, a log line, a registered function, an end, or the start of a wait.

A try answers an :class:`~endpoints.flows.steps.Outcome` and never raises for the state's own
failures (a refused call, a failed expression, a function that raised): those are its ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from endpoints.flows.definition import StateSpec
from endpoints.flows.durations import seconds
from endpoints.flows.expressions import ExpressionError
from endpoints.flows.model import SELECT_FLOW, SUCCESS, USER_INPUT, WAITING, WAITING_UNTIL
from endpoints.flows.steps import Outcome, context_of
from flowbus import FlowBusError, Identity, InvalidData, PermissionDenied, Services

if TYPE_CHECKING:
    from endpoints.flows.engine import Engine

__all__ = ["attempt"]

logger = logging.getLogger("flowbus.flows")

_WAITS = ("wait", "input", "choose")
"""Actions whose ``timeout`` bounds a wait (a timer) rather than the work."""
_TRUE = (True, "true", "1", "yes")


async def attempt(engine: Engine, namespace: str, record: dict[str, Any], state: StateSpec) -> Outcome:
    """One try of ``state``'s work for the execution ``record``, within the state's ``timeout``."""
    context = context_of(record, state.name)
    try:
        if state.timeout is not None:  # within the bound for a flow stored before it
            seconds(state.timeout, "timeout", positive=True)
        if state.timeout is not None and state.action not in _WAITS:
            async with asyncio.timeout(state.timeout):
                return await _act(engine, namespace, record, state, context)
        return await _act(engine, namespace, record, state, context)
    except TimeoutError:
        return Outcome("timeout", error=f"state {state.name!r} took longer than {state.timeout} s")
    except ExpressionError as exc:
        return Outcome("error", error=str(exc))
    except FlowBusError as exc:
        return Outcome("error", error=f"{exc.errorcode}: {exc.message}")
    except Exception as exc:  # a registered callable's own failure
        logger.info("state %r failed: %r", state.name, exc)
        return Outcome("error", error=f"{type(exc).__name__}: {exc}")


async def _act(
    engine: Engine, namespace: str, record: dict[str, Any], state: StateSpec, context: dict[str, Any]
) -> Outcome:
    action = state.action
    services, clock = engine.services, engine.clock
    values = {name: value.evaluate(context) for name, value in state.values.items()}
    if action == "call" and _runs_a_flow_to_its_end(values):
        return await _run_flow(engine, namespace, record, values)
    if action == "call":
        return await _call(services, namespace, record, values)
    if action == "set":
        outcome = Outcome(result=values.get("vars") or {})
        outcome.input = values.get("vars")
        return outcome
    if action == "log":
        level = logging.getLevelName(str(state.spec.get("level", "info")).upper())
        logger.log(
            level if isinstance(level, int) else logging.INFO,
            "flow %s: %s",
            record["flowName"],
            values.get("message"),
        )
        return Outcome(result=values.get("message"))
    if action == "invoke":
        return await _invoke(services, str(state.spec["name"]), values.get("args"))
    if action == "end":
        return Outcome("end", result=values.get("output"))
    return _wait(state, values, clock.now())


async def _call(services: Services, namespace: str, record: dict[str, Any], values: dict[str, Any]) -> Outcome:
    """A ``call`` state: one call through the dispatcher, as the user who started the execution."""
    result = await services.call(
        _identity(services, record),
        str(values.get("method")),
        str(values.get("endpoint")),
        objectid=_text_or_none(values.get("objectid")),
        namespace=str(values.get("namespace") or namespace),
        data=values.get("data"),
        parameters=values.get("parameters") or {},
    )
    outcome = Outcome(result=result)
    outcome.input = {k: values.get(k) for k in ("endpoint", "method", "objectid", "data") if values.get(k) is not None}
    return outcome


def _runs_a_flow_to_its_end(values: dict[str, Any]) -> bool:
    """Whether a ``call`` starts an execution of a flow and waits for it (``parameters.wait``)."""
    parameters = values.get("parameters")
    if values.get("endpoint") != "flows/flow" or str(values.get("method")).upper() != "RUN":
        return False
    if not isinstance(parameters, dict) or parameters.get("operation", "start") != "start":
        return False
    wait = parameters.get("wait", False)
    return wait in _TRUE or (isinstance(wait, str) and wait.lower() in _TRUE)


async def _run_flow(engine: Engine, namespace: str, record: dict[str, Any], values: dict[str, Any]) -> Outcome:
    """A ``call`` that RUNs a flow with ``wait``: the execution it starts is waited for until it
    ends (through its own waits), not only until it first waits as a client's RUN is. Its output
    is the result; an execution that does not end in SUCCESS is the call's error. Should the call
    be given up (its state's timeout, a hard stop), the execution is stopped."""
    services = engine.services
    target = str(values.get("namespace") or namespace)
    parameters = {k: v for k, v in values["parameters"].items() if k not in ("wait", "stream")}
    start = asyncio.ensure_future(
        services.call(
            _identity(services, record),
            "RUN",
            "flows/flow",
            objectid=_text_or_none(values.get("objectid")),
            namespace=target,
            data=values.get("data"),
            parameters=parameters,
        )
    )
    try:
        started = await asyncio.shield(start)  # given up meanwhile: what it started is stopped
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            child = await start
            if not engine.stopping:
                await engine.abandon(target, child["id"])
        raise
    outcome = Outcome(result=started)
    outcome.input = {k: values.get(k) for k in ("endpoint", "method", "objectid", "data") if values.get(k) is not None}
    if not isinstance(started, dict) or not isinstance(started.get("id"), str):
        return outcome
    ended = await engine.ended(target, started["id"])
    if ended["status"] != SUCCESS:
        reason = f": {ended['error']}" if ended.get("error") else ""
        name = ended.get("flowName")
        outcome.on, outcome.result = "error", None
        outcome.error = f"the execution {ended['id']} of {name!r} ended {ended['status']}{reason}"
        return outcome
    outcome.result = ended.get("output")
    return outcome


def _identity(services: Services, record: dict[str, Any]) -> Identity:
    """The execution's user as it is now (its roles may have changed since it started)."""
    identity = services.identify(record.get("owner") or "")
    if identity is None:
        raise PermissionDenied(f"The execution's user {record.get('owner')!r} no longer exists")
    return identity


async def _invoke(services: Services, name: str, args: Any) -> Outcome:
    function = services.functions.get(name)
    if function is None:
        return Outcome("error", error=f"No function named {name!r} is registered")
    result = function(args)
    if inspect.isawaitable(result):
        result = await result
    return Outcome(result=result)


def _wait(state: StateSpec, values: dict[str, Any], now: float) -> Outcome:
    """A state that waits: for an event, a time, an answer or a choice (its deadline, if any,
    goes in ``waiting``; the timers module arms it once the wait is committed)."""
    outcome = Outcome("wait")
    deadline = now + state.timeout if state.timeout is not None else None
    if state.action == "wait" and "event" in state.spec:
        outcome.wait = WAITING
        outcome.waiting = {"waitEvent": values.get("event", state.spec["event"])}
    elif state.action == "wait":
        outcome.wait = WAITING_UNTIL
        deadline = _deadline(values, now)
    elif state.action == "input":
        outcome.wait = USER_INPUT
        model = values.get("model") if "model" in state.spec else {}
        outcome.waiting = {"schema": state.spec.get("schema"), "model": model, "form": state.spec.get("form", ["*"])}
    else:
        outcome.wait = SELECT_FLOW
        outcome.waiting = {"choices": list(state.spec.get("flows") or [])}
    outcome.waiting["deadline"] = deadline
    return outcome


def _deadline(values: dict[str, Any], now: float) -> float:
    """When a ``wait`` state for a time ends: ``seconds`` from now, or the time ``until``."""
    if values.get("seconds") is not None:
        return now + seconds(values["seconds"], "seconds")
    until = values.get("until")
    try:
        moment = datetime.fromisoformat(str(until).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidData(f"'until' must be an ISO 8601 time, not {until!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
