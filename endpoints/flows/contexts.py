"""Context ids: the number every execution gets, unique across the bus.

An execution's ``id`` is a UUID; its ``contextId`` is a positive integer that fits a signed
64-bit long, as clients of the Flux REST API expect. It is unique across every process that
shares the store (a SQLite file or a PostgreSQL database), yet taking one costs no store round
trip: the numbers are handed out from memory, from a block this process reserved.

**The block allocator.** One counter object (``flows/counter`` ``contextId``, in the default
namespace) holds the first number no process has reserved. A process reserves a block of
:data:`BLOCK` numbers with one compare-and-set on it (a patch conditional on the version it
read: of two processes reserving at once exactly one wins, the other reads again and takes the
next block), then hands them out in order from memory, and reserves the next block when it has
given the last. So numbers are unique but not dense and not in start order across processes:
each process's numbers rise, a restart leaves the rest of its block unused, and two processes
interleave by blocks.

**Finding an execution by its number.** Beside each execution, in the same commit as its
record, a small record ``flows/context`` ``<number>`` (default namespace) names its namespace
and id: a call by contextId reads that one record (usually from the cache), whatever the
namespace of the call. Executions stored before context ids existed have none and are reached
by their id alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from endpoints.flows.model import CONTEXTS, COUNTERS, no_text
from flowbus import Conflict, Get, Insert, Store, Unavailable

__all__ = ["BLOCK", "MAX_CONTEXT_ID", "ContextIds", "context_id_of", "context_record"]

BLOCK = 100
"""How many numbers one reservation takes."""
MAX_CONTEXT_ID = 2**63 - 1
COUNTER = "contextId"
"""The id of the counter object."""
_TRIES = 1000
"""Reservations lost to other processes before giving up (each loss is another's progress)."""


class ContextIds:
    """Hands out context ids from a block reserved on the store's counter (see the module's text)."""

    def __init__(self, block: int = BLOCK) -> None:
        self.block = block
        self._store: Store | None = None
        self._next = 0
        self._end = 0  # the block is [_next, _end)
        self._lock = asyncio.Lock()

    def open(self, store: Store) -> None:
        """Reserve on ``store`` from now on; nothing of an earlier block is handed out."""
        self._store = store
        self._next = self._end = 0

    async def take(self) -> int:
        """The next context id: from memory, or from a block reserved now when none is left."""
        if self._next >= self._end:
            async with self._lock:  # one reservation at a time; the others wait for its block
                if self._next >= self._end:
                    self._next, self._end = await self._reserve()
        number = self._next
        self._next += 1
        return number

    async def _reserve(self) -> tuple[int, int]:
        store = self._store
        if store is None:
            raise RuntimeError("the flow engine has not started")
        for _ in range(_TRIES):
            # Read through a transaction: the store's own answer, never a cached copy.
            found = (await store.transaction([Get(COUNTERS, "", COUNTER)]))[0]
            first = 1 if found is None else _number(found.get("next"))
            end = first + self.block
            if end - 1 > MAX_CONTEXT_ID:
                raise Unavailable("Context ids are exhausted")
            try:
                if found is None:
                    await store.insert(COUNTERS, "", {"id": COUNTER, "next": end}, no_text)
                else:
                    await store.patch(COUNTERS, "", COUNTER, {"next": end}, no_text, expect=found["version"])
            except Conflict:
                continue  # another process reserved meanwhile: read again, take the next block
            return first, end
        raise Unavailable("Could not reserve context ids: the counter kept changing")


def _number(value: Any) -> int:
    if type(value) is not int or value < 1:
        raise Unavailable("The context id counter is damaged")
    return value


def context_id_of(value: Any) -> int | None:
    """The context id ``value`` spells (a positive integer, or a string of digits), else None."""
    if type(value) is int:
        return value if 0 < value <= MAX_CONTEXT_ID else None
    if isinstance(value, str) and 0 < len(value) <= 19 and value.isascii() and value.isdigit():
        number = int(value)
        return number if 0 < number <= MAX_CONTEXT_ID else None
    return None


def context_record(namespace: str, record: dict[str, Any]) -> Insert:
    """The write of the record that finds ``record`` (an execution) by its context id."""
    objectid = str(record["contextId"])
    return Insert(CONTEXTS, "", {"id": objectid, "namespace": namespace, "execution": record["id"]}, no_text)
