"""Flow definitions: the device-approval example, the compiled form, and each fault named by its field."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from endpoints.flows.definition import Definition, Retry, order_of_states, validate_definition
from endpoints.flows.durations import MAX_SECONDS
from flowbus import InvalidData
from tests.endpoints.flows.helpers import DEVICE_APPROVAL

EXAMPLE: dict[str, Any] = DEVICE_APPROVAL

Change = Callable[[dict[str, Any]], Any]


def changed(change: Change) -> dict[str, Any]:
    flow = copy.deepcopy(EXAMPLE)
    change(flow)
    return flow


def with_state(name: str, /, **state: Any) -> Change:
    """The example with one more state, reached from ``create`` on the event ``go`` (and going to ``done``)."""

    def change(flow: dict[str, Any]) -> None:
        flow["states"][name] = {"transitions": [{"on": "success", "to": "done"}], **state}
        flow["states"]["create"]["transitions"].append({"on": "go", "to": name})

    return change


def state(name: str, /, **fields: Any) -> Change:
    return lambda flow: flow["states"][name].update(fields)


def refused(change: Change) -> InvalidData:
    with pytest.raises(InvalidData) as info:
        validate_definition(changed(change))
    return info.value


# -- the example and the compiled form ----------------------------------------------------------


def test_the_example_validates() -> None:
    definition = validate_definition(copy.deepcopy(EXAMPLE))
    assert isinstance(definition, Definition)
    assert definition.start == "create"
    assert list(definition.states) == ["create", "approval", "done", "failed"]
    assert definition.data["name"] == "device-approval"


def test_the_states_are_compiled_for_the_engine() -> None:
    states = validate_definition(copy.deepcopy(EXAMPLE)).states
    create, approval, done = states["create"], states["approval"], states["done"]
    assert (create.name, create.action, create.timeout, create.retry) == ("create", "call", None, Retry(0, 1.0, 2.0))
    assert create.spec["endpoint"] == "inventory/device"
    assert [(t.on, t.to, t.condition) for t in create.transitions] == [
        ("success", "approval", None),
        ("error", "failed", None),
    ]
    assert create.message is not None and create.message.evaluate({}) == "Creating the device"
    assert create.values["data"].evaluate({"input": {"name": "r1"}}) == {"name": "r1", "location": "staging"}
    assert create.values["method"].evaluate({}) == "CREATE"
    assert approval.timeout == 86400.0 and approval.proceed_on_failure is False
    condition = approval.transitions[0].condition
    assert condition is not None and condition.evaluate({"event": {"input": {"ok": True}}}) is True
    assert done.transitions == () and done.values["output"].evaluate({"vars": {"device": {"id": 7}}}) == {
        "id": 7,
        "by": None,
    }


def test_the_definition_is_frozen() -> None:
    definition = validate_definition(copy.deepcopy(EXAMPLE))
    with pytest.raises(dataclasses.FrozenInstanceError):
        definition.start = "done"  # type: ignore[misc]


def test_order_of_states_is_breadth_first_from_the_start() -> None:
    flow = changed(lambda f: f.update(startState="approval") or f["states"]["create"]["transitions"].clear())
    flow["states"]["done"] = {"action": "log", "message": "x", "transitions": [{"on": "success", "to": "create"}]}
    flow["states"]["create"]["transitions"] = [{"on": "success", "to": "end"}]
    flow["states"]["end"] = {"action": "end"}
    assert order_of_states(validate_definition(flow)) == ["approval", "done", "failed", "create", "end"]
    assert order_of_states(validate_definition(copy.deepcopy(EXAMPLE))) == ["create", "approval", "failed", "done"]


def test_methods_and_statuses_are_normalized_to_upper_case_without_touching_the_input() -> None:
    flow = changed(
        lambda f: (f["states"]["create"].update(method="create"), f["states"]["failed"].update(status="error"))
    )
    definition = validate_definition(flow)
    assert definition.data["states"]["create"]["method"] == "CREATE"
    assert definition.states["create"].values["method"].evaluate({}) == "CREATE"
    assert definition.states["failed"].spec["status"] == "ERROR"
    assert flow["states"]["create"]["method"] == "create"


def test_unknown_top_level_fields_are_kept_and_optional_fields_accepted() -> None:
    extra = {
        "description": "d",
        "disabled": True,
        "triggers": ["device-added"],
        "schedule": "? 0 2 ? * *",
        "timezone": "America/Los_Angeles",
        "tags": ["a"],
        "skipRetries": True,
        "onCrash": "interrupt",
        "owner": {"anything": 1},
    }
    assert validate_definition(changed(lambda f: f.update(extra))).data["owner"] == {"anything": 1}


STATES: dict[str, dict[str, Any]] = {
    "a": {"action": "set", "vars": {"x": "=input.name"}, "retry": {"max": 2, "delay": 0, "backoff": 1.5}},
    "b": {"action": "wait", "seconds": "=vars.delay", "proceedOnFailure": True},
    "c": {"action": "wait", "until": "2026-01-01T00:00:00Z", "message": "=vars.why"},
    "d": {"action": "input", "schema": {"type": "object"}, "result": "answer"},
    "e": {"action": "choose", "flows": ["one", "two"], "result": "chosen"},
    "f": {"action": "log", "message": "=input.name", "level": "warning"},
    "g": {"action": "invoke", "name": "checksum", "args": {"a": "=input"}, "result": "sum"},
    "h": {"action": "call", "endpoint": "x/y", "method": "open", "objectid": "=vars.id", "parameters": {}},
    "i": {"action": "wait", "seconds": 0},
}


def test_every_action_with_its_options_validates() -> None:
    def change(flow: dict[str, Any]) -> None:
        for name, spec in STATES.items():
            with_state(name, **spec)(flow)

    definition = validate_definition(changed(change))
    assert definition.states["a"].retry == Retry(2, 0.0, 1.5)
    assert definition.states["b"].values["seconds"].evaluate({"vars": {"delay": 5}}) == 5
    assert definition.states["b"].proceed_on_failure is True
    assert definition.states["h"].values["method"].evaluate({}) == "OPEN"


@pytest.mark.parametrize("on", ["success", "error", "timeout", "device.added", "any event"])
def test_a_transition_is_on_an_outcome_or_any_event(on: str) -> None:
    flow = changed(lambda f: f["states"]["approval"]["transitions"].append({"on": on, "to": "done"}))
    assert validate_definition(flow).states["approval"].transitions[-1].on == on


# -- each fault, named by its field --------------------------------------------------------------

FAULTS = [
    pytest.param(lambda f: f.pop("startState"), "startState", "startState", id="no-start-state"),
    pytest.param(lambda f: f.update(startState="nowhere"), "startState", "nowhere", id="unknown-start-state"),
    pytest.param(
        lambda f: f["states"]["approval"]["transitions"][1].update(to="limbo"),
        "states.approval.transitions[1].to",
        "limbo",
        id="unknown-target",
    ),
    pytest.param(lambda f: f["states"].update(orphan={"action": "end"}), "states.orphan", "orphan", id="unreachable"),
    pytest.param(state("create", action="teleport"), "states.create.action", "teleport", id="unknown-action"),
    pytest.param(lambda f: f["states"].pop("failed") and None, "states.create.transitions[1].to", "failed", id="gone"),
    pytest.param(
        lambda f: f["states"]["create"]["data"].update(name="=input.[name"),
        "states.create.data",
        "=input.[name",
        id="bad-expression",
    ),
    pytest.param(
        lambda f: f["states"]["approval"]["transitions"][0].update({"if": "=event.(("}),
        "states.approval.transitions[0].if",
        "=event.((",
        id="bad-if",
    ),
    pytest.param(
        lambda f: f["states"]["approval"]["transitions"][0].update({"if": "yes"}),
        "states.approval.transitions[0].if",
        "expression",
        id="if-not-an-expression",
    ),
    pytest.param(state("create", message="=nope("), "states.create.message", "=nope(", id="bad-message-expression"),
    pytest.param(state("done", output=["=oops("]), "states.done.output", "=oops(", id="bad-output-expression"),
    pytest.param(state("create", data={"n": "=frob(input)"}), "states.create.data", "frob", id="unknown-function"),
    pytest.param(lambda f: f.update(schedule="61 * * * *"), "schedule", "61 * * * *", id="bad-cron"),
    pytest.param(lambda f: f.update(schedule="* * *"), "schedule", "* * *", id="cron-field-count"),
    pytest.param(lambda f: f.update(timezone="Mars/Olympus"), "timezone", "Mars/Olympus", id="unknown-timezone"),
    pytest.param(lambda f: f.update(timezone=1), "timezone", "timezone", id="timezone-type"),
    pytest.param(lambda f: f.update(input={"type": "nope"}), "input", "input", id="bad-input-schema"),
    pytest.param(lambda f: f.update(input="object"), "input", "input", id="input-not-an-object"),
    pytest.param(
        state("create", transitions=[]), "states.create.transitions", "'create' has no transitions", id="no-transitions"
    ),
    pytest.param(
        lambda f: f["states"]["create"].pop("transitions") and None,
        "states.create.transitions",
        "is not an end state",
        id="transitions-missing",
    ),
    pytest.param(state("create", transitions={}), "states.create.transitions", "array", id="transitions-type"),
    pytest.param(
        with_state("w", action="wait", event="x", transitions=[]),
        "states.w.transitions",
        "'w' has no transitions",
        id="wait-no-exit",
    ),
    pytest.param(
        state("done", transitions=[{"on": "success", "to": "failed"}]),
        "states.done.transitions",
        "end state",
        id="end-with-transitions",
    ),
    pytest.param(
        lambda f: f["states"]["create"]["transitions"].append("approval"),
        "states.create.transitions[2]",
        "create",
        id="transition-type",
    ),
    pytest.param(
        lambda f: f["states"]["create"]["transitions"][0].update(on=""),
        "states.create.transitions[0].on",
        "create",
        id="transition-on-empty",
    ),
    pytest.param(
        lambda f: f["states"]["create"]["transitions"][0].pop("on"),
        "states.create.transitions[0].on",
        "create",
        id="transition-on-missing",
    ),
    pytest.param(lambda f: f.pop("name"), "name", "name", id="no-name"),
    pytest.param(lambda f: f.update(name=""), "name", "name", id="empty-name"),
    pytest.param(lambda f: f.update(name="n" * 257), "name", "256", id="long-name"),
    pytest.param(lambda f: f.update(description=3), "description", "description", id="description-type"),
    pytest.param(lambda f: f.update(disabled="no"), "disabled", "disabled", id="disabled-type"),
    pytest.param(lambda f: f.update(skipRetries=1), "skipRetries", "skipRetries", id="skipRetries-type"),
    pytest.param(lambda f: f.update(triggers="device-added"), "triggers", "triggers", id="triggers-type"),
    pytest.param(lambda f: f.update(triggers=[1]), "triggers", "triggers", id="trigger-type"),
    pytest.param(lambda f: f.update(tags=["a", None]), "tags", "tags", id="tags-type"),
    pytest.param(lambda f: f.update(onCrash="restart"), "onCrash", "onCrash", id="onCrash"),
    pytest.param(lambda f: f.update(states={}), "states", "states", id="no-states"),
    pytest.param(lambda f: f.update(states=[]), "states", "states", id="states-type"),
    pytest.param(lambda f: f["states"].update(create="call"), "states.create", "create", id="state-type"),
    pytest.param(lambda f: f["states"]["create"].pop("action"), "states.create.action", "create", id="no-action"),
    pytest.param(state("create", timeout=0), "states.create.timeout", "timeout", id="timeout-zero"),
    pytest.param(state("create", timeout="1h"), "states.create.timeout", "timeout", id="timeout-type"),
    pytest.param(state("create", retry=3), "states.create.retry", "retry", id="retry-type"),
    pytest.param(state("create", retry={"max": -1}), "states.create.retry.max", "retry.max", id="retry-max"),
    pytest.param(state("create", retry={"max": 1.5}), "states.create.retry.max", "retry.max", id="retry-max-type"),
    pytest.param(state("create", retry={"delay": -1}), "states.create.retry.delay", "delay", id="retry-delay"),
    pytest.param(state("create", retry={"backoff": 0.5}), "states.create.retry.backoff", "backoff", id="retry-backoff"),
    pytest.param(
        state("create", proceedOnFailure="yes"), "states.create.proceedOnFailure", "proceedOnFailure", id="proceed-type"
    ),
    pytest.param(state("create", message=5), "states.create.message", "message", id="message-type"),
    pytest.param(state("create", result=5), "states.create.result", "result", id="result-type"),
    pytest.param(
        lambda f: f["states"]["create"].pop("endpoint"), "states.create.endpoint", "endpoint", id="call-endpoint"
    ),
    pytest.param(state("create", endpoint=3), "states.create.endpoint", "endpoint", id="call-endpoint-type"),
    pytest.param(lambda f: f["states"]["create"].pop("method"), "states.create.method", "method", id="call-no-method"),
    pytest.param(state("create", method="GET"), "states.create.method", "method", id="call-method"),
    pytest.param(state("create", objectid=5), "states.create.objectid", "objectid", id="call-objectid-type"),
    pytest.param(state("create", namespace=[]), "states.create.namespace", "namespace", id="call-namespace-type"),
    pytest.param(
        state("create", parameters="a=1"), "states.create.parameters", "parameters", id="call-parameters-type"
    ),
    pytest.param(with_state("s", action="set"), "states.s.vars", "vars", id="set-no-vars"),
    pytest.param(with_state("s", action="set", vars=[1]), "states.s.vars", "vars", id="set-vars-type"),
    pytest.param(with_state("w", action="wait"), "states.w", "one of", id="wait-nothing"),
    pytest.param(with_state("w", action="wait", event="e", seconds=3), "states.w", "one of", id="wait-two"),
    pytest.param(state("approval", event=5), "states.approval.event", "event", id="wait-event-type"),
    pytest.param(with_state("w", action="wait", seconds=-1), "states.w.seconds", "seconds", id="wait-seconds"),
    pytest.param(with_state("w", action="wait", seconds=True), "states.w.seconds", "seconds", id="wait-seconds-bool"),
    pytest.param(with_state("w", action="wait", until="tomorrow"), "states.w.until", "until", id="wait-until"),
    pytest.param(with_state("w", action="wait", seconds="=vars.("), "states.w.seconds", "=vars.(", id="wait-expr"),
    pytest.param(with_state("i", action="input"), "states.i.schema", "schema", id="input-no-schema"),
    pytest.param(with_state("i", action="input", schema={"type": 1}), "states.i.schema", "schema", id="input-schema"),
    pytest.param(with_state("c", action="choose"), "states.c.flows", "flows", id="choose-no-flows"),
    pytest.param(with_state("c", action="choose", flows=[]), "states.c.flows", "flows", id="choose-empty"),
    pytest.param(with_state("c", action="choose", flows="a"), "states.c.flows", "flows", id="choose-flows-type"),
    pytest.param(with_state("l", action="log"), "states.l.message", "message", id="log-no-message"),
    pytest.param(with_state("l", action="log", message="m", level="loud"), "states.l.level", "level", id="log-level"),
    pytest.param(with_state("v", action="invoke"), "states.v.name", "name", id="invoke-no-name"),
    pytest.param(with_state("v", action="invoke", name=3), "states.v.name", "name", id="invoke-name-type"),
    pytest.param(state("failed", status="FAILED"), "states.failed.status", "status", id="end-status"),
    pytest.param(with_state("w", action="wait", seconds=1e300), "states.w.seconds", "seconds", id="wait-seconds-huge"),
    pytest.param(
        with_state("w", action="wait", seconds=MAX_SECONDS + 1), "states.w.seconds", "seconds", id="wait-seconds-max"
    ),
    pytest.param(state("create", timeout=1e300), "states.create.timeout", "timeout", id="timeout-huge"),
    pytest.param(state("approval", timeout=MAX_SECONDS + 0.5), "states.approval.timeout", "timeout", id="wait-timeout"),
    pytest.param(
        state("create", retry={"max": 3, "delay": 1e308}), "states.create.retry.delay", "delay", id="delay-huge"
    ),
    pytest.param(
        state("create", retry={"delay": MAX_SECONDS + 1}), "states.create.retry.delay", "delay", id="delay-max"
    ),
    pytest.param(lambda f: f.update(schedule="0 0 30 2 *"), "schedule", "never fires", id="cron-never-fires"),
    pytest.param(lambda f: f.update(schedule="0 0 0 ? 2 MON#5"), "schedule", "366 days", id="cron-too-far"),
]


@pytest.mark.parametrize(("change", "field", "culprit"), FAULTS)
def test_each_fault_is_refused_naming_its_field(change: Change, field: str, culprit: str) -> None:
    fault = refused(change)
    assert fault.field == field
    assert culprit in str(fault)


def test_the_first_unreachable_state_is_named() -> None:
    fault = refused(
        lambda f: f["states"].update(
            island={"action": "log", "message": "m", "transitions": [{"on": "success", "to": "done"}]}
        )
    )
    assert (fault.field, "'island' cannot be reached from 'create'" in str(fault)) == ("states.island", True)


def test_durations_up_to_the_bound_are_accepted() -> None:
    definition = validate_definition(
        changed(
            lambda f: (
                with_state("w", action="wait", seconds=MAX_SECONDS, timeout=MAX_SECONDS)(f),
                f["states"]["approval"].update(timeout=MAX_SECONDS),
            )
        )
    )
    assert (definition.states["w"].timeout, definition.states["approval"].timeout) == (MAX_SECONDS, MAX_SECONDS)
    assert MAX_SECONDS == 366 * 86400


def test_the_engine_compiles_a_stored_definition_beyond_the_bounds() -> None:
    """A flow stored before the bounds still runs: its durations are checked when evaluated."""
    flow = changed(state("approval", timeout=1e300))
    assert validate_definition(flow, bounded=False).states["approval"].timeout == 1e300


def test_a_definition_must_be_an_object() -> None:
    with pytest.raises(InvalidData, match="JSON object"):
        validate_definition([])  # type: ignore[arg-type]
