"""What went wrong when the bus started a flow on its own, kept where users look: the flow's status.

A schedule that fires but cannot start its flow (its ``input`` schema wants more than a firing
gives, say) and a trigger event whose input the flow's schema refuses start nothing, and there is
no caller to tell. So each flow has one small record (``flows/health``, its id the flow's id),
written only when something is to be told:

- ``lastError``: ``{"at", "message"}``, the latest scheduled start that failed; cleared by the next
  scheduled start that succeeds (as a scheduler job's ``lastError`` is);
- ``skipped``: how many trigger events the flow refused, and ``lastSkip``: ``{"at", "event",
  "reason"}``, the latest of them.

``flows/status`` answers them beside the flow's state. The record goes with its flow. Counting
is a conditional write, so several processes sharing a store count every skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from endpoints.flows.model import no_text
from flowbus import Conflict, DoesNotExist, Store

__all__ = ["HEALTH", "failed", "forget", "health_of", "skipped", "started"]

HEALTH = "flows/health"
_TRIES = 20


def health_of(record: dict[str, Any] | None) -> dict[str, Any]:
    """The fields ``flows/status`` shows, from a flow's health record (None: nothing to tell)."""
    record = record or {}
    return {
        "lastError": record.get("lastError"),
        "skipped": record.get("skipped", 0),
        "lastSkip": record.get("lastSkip"),
    }


async def failed(store: Store, namespace: str, flow_id: str, at: str, message: str) -> None:
    """A scheduled start of the flow failed."""
    await _update(store, namespace, flow_id, lambda _: {"lastError": {"at": at, "message": message}})


async def started(store: Store, namespace: str, flow_id: str) -> None:
    """A scheduled start succeeded: the last error, if any, is cleared."""
    current = await store.get(HEALTH, namespace, flow_id)
    if current is not None and current.get("lastError") is not None:
        await _update(store, namespace, flow_id, lambda _: {"lastError": None})


async def skipped(store: Store, namespace: str, flow_id: str, at: str, event: str, reason: str) -> None:
    """A trigger event did not start the flow: its input was refused."""
    last = {"at": at, "event": event, "reason": reason}
    await _update(
        store, namespace, flow_id, lambda current: {"skipped": current.get("skipped", 0) + 1, "lastSkip": last}
    )


async def forget(store: Store, namespace: str, flow_id: str) -> None:
    """The flow is deleted: so is what was told of it."""
    if await store.get(HEALTH, namespace, flow_id) is not None:
        with contextlib.suppress(DoesNotExist):
            await store.delete(HEALTH, namespace, flow_id)


async def _update(
    store: Store, namespace: str, flow_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Write ``change(current)`` on the flow's health record, by a write conditional on what was read."""
    for _ in range(_TRIES):
        current = await store.get(HEALTH, namespace, flow_id)
        try:
            if current is None:
                await store.insert(HEALTH, namespace, {"id": flow_id, **change({})}, no_text)
            else:
                await store.patch(HEALTH, namespace, flow_id, change(current), no_text, expect=current["version"])
        except Conflict:
            continue  # another writer came between: read again
        return
