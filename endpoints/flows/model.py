"""What the flow engine stores: names of its collections, the execution statuses, and the views
of an execution record that the API answers."""

from __future__ import annotations

import time
from typing import Any

from flowbus import iso_ms

__all__ = [
    "ACTIVE",
    "CANCELED",
    "CONTEXTS",
    "COUNTERS",
    "ERROR",
    "EXECUTIONS",
    "FINAL",
    "FIRED",
    "FLOWS",
    "INTERRUPTED",
    "PAUSED",
    "QUEUED",
    "REVISIONS",
    "RUNNING",
    "SELECT_FLOW",
    "STATUSES",
    "SUCCESS",
    "USER_INPUT",
    "WAITING",
    "WAITING_UNTIL",
    "WAITS",
    "context_view",
    "no_text",
    "progress_view",
    "stamp",
    "state_view",
]

FLOWS = "flows/flow"
EXECUTIONS = "flows/execution"
REVISIONS = "flows/revision"
"""Definitions as they were when an execution started, by ``<flow id>@<version>``."""
CONTEXTS = "flows/context"
"""One record per execution that has a context id (its id is the number, in the default
namespace): the execution's namespace and id (see :mod:`endpoints.flows.contexts`)."""
COUNTERS = "flows/counter"
"""Counters of the flows application: ``contextId``, the first context id no process reserved."""
FIRED = "flows/fired"
"""One record per scheduled flow (its id), holding the latest firing claimed: several processes
sharing a store fire each firing once."""

QUEUED = "QUEUED"
RUNNING = "RUNNING"
WAITING = "WAITING"
WAITING_UNTIL = "WAITING_UNTIL"
USER_INPUT = "USER_INPUT"
SELECT_FLOW = "SELECT_FLOW"
PAUSED = "PAUSED"
SUCCESS = "SUCCESS"
ERROR = "ERROR"
CANCELED = "CANCELED"
INTERRUPTED = "INTERRUPTED"
STATUSES = (
    QUEUED,
    RUNNING,
    WAITING,
    WAITING_UNTIL,
    USER_INPUT,
    SELECT_FLOW,
    PAUSED,
    SUCCESS,
    ERROR,
    CANCELED,
    INTERRUPTED,
)
FINAL = frozenset({SUCCESS, ERROR, CANCELED, INTERRUPTED})
WAITS = frozenset({WAITING, WAITING_UNTIL, USER_INPUT, SELECT_FLOW})
"""Statuses of an execution that waits for something from outside (an event, a time, an answer)."""
ACTIVE = frozenset({QUEUED, RUNNING})

_INTERNAL = (
    "revision",
    "waitEvent",
    "command",
    "pausedFrom",
    "flowId",
    "deadline",
    "choices",
    "schema",
    "parent",
    "resuming",
    "model",
    "form",
)
_FORM = ("schema", "model", "form")
"""What a USER_INPUT execution shows so that a GUI can draw its form (xd-schema-form's three parts)."""


def stamp(moment: float | None = None) -> str:
    """A flow's ``createdAt`` or ``lastModified``: RFC 3339 in UTC to the millisecond, with ``Z``
    (``2017-06-19T21:27:09.945Z``, as integration platforms write it); now unless ``moment`` is given."""
    return iso_ms(time.time() if moment is None else moment)


def no_text(obj: dict[str, Any]) -> str:
    """The search text of the engine's own records: none (they are not searched, and keep no index row)."""
    return ""


def context_view(record: dict[str, Any]) -> dict[str, Any]:
    """An execution's context as OPEN answers it (the engine's bookkeeping left out)."""
    view = {k: v for k, v in record.items() if k not in _INTERNAL}
    if record.get("status") == USER_INPUT:
        view.update((key, record.get(key)) for key in _FORM)
    if record.get("status") == SELECT_FLOW:
        view["flows"] = record.get("choices")
    if record.get("parent"):
        view["parent"] = record["parent"]
    return view


def progress_view(record: dict[str, Any]) -> dict[str, Any]:
    """The short form: what a GUI polls or a stream sends while an execution runs."""
    view = {
        "id": record["id"],
        "status": record["status"],
        "percentage": record.get("percentage", 0),
        "message": record.get("message", ""),
        "flow": record.get("flow"),
        "currentState": record.get("currentState"),
    }
    if record.get("contextId") is not None:
        view["contextId"] = record["contextId"]
    if record.get("status") == USER_INPUT:
        view.update((key, record.get(key)) for key in _FORM)
    if record.get("status") == SELECT_FLOW:
        view["flows"] = record.get("choices")
    if record.get("status") in FINAL:
        view["output"] = record.get("output")
    if record.get("error"):
        view["error"] = record["error"]
    return view


def state_view(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The context of state ``name``: its latest run in this execution, or None if it never ran."""
    for context in reversed(record.get("stateContexts") or []):
        if context.get("name") == name:
            return dict(context)
    return None
