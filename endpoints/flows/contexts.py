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
namespace of the call. When that namespace is not the call's, the call is made again there
through the dispatcher, as the caller (:func:`forwarded`), so the caller's permissions decide;
a namespace it may not use hides the execution (DO_NOT_EXIST, as for a number that names none).

Executions stored before context ids existed are reached by their id; recovery gives those
that have not ended a number when a bus starts on the store.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from endpoints.flows.model import CONTEXTS, COUNTERS, no_text
from flowbus import (
    Call,
    Conflict,
    DoesNotExist,
    Get,
    Insert,
    InvalidData,
    InvalidRequest,
    PermissionDenied,
    Store,
    Unavailable,
)

if TYPE_CHECKING:
    from endpoints.flows.repository import Repository

__all__ = [
    "BLOCK",
    "MAX_CONTEXT_ID",
    "ContextIds",
    "aimed",
    "context_id_of",
    "context_record",
    "forwarded",
    "located",
    "named",
]

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


# -- calls that name an execution by its context id ----------------------------------------------


def aimed(data: dict[str, Any], parameters: dict[str, Any]) -> str | int | None:
    """The execution an event is sent to: ``contextId`` in its data or in its parameters (over
    HTTP, the query string), which must agree when both are given; None for every waiting one.
    Either spells an execution's id or its context id."""
    given = data.get("contextId")
    if given is not None and not isinstance(given, str) and context_id_of(given) is None:
        raise InvalidData("'contextId' must be an execution id or a context id", field="contextId")
    parameter = parameters.get("contextId")
    if parameter is not None and not isinstance(parameter, str) and context_id_of(parameter) is None:
        raise InvalidRequest("'contextId' must be one execution id or context id")
    if given is not None and parameter is not None and str(given) != str(parameter):
        raise InvalidRequest("'contextId' is given in the data and in the parameters, with different values")
    target: str | int | None = given if given is not None else parameter
    return target


def named(record: dict[str, Any], ids: str) -> Any:
    """How an event's answer names an execution: its id, or (``ids=contextId``) its context id
    (its id if it has none: it was stored before context ids)."""
    return record.get("contextId", record["id"]) if ids == "contextId" else record["id"]


async def located(repository: Repository, number: int) -> tuple[str, str]:
    """The namespace and id of the execution whose context id is ``number``.

    Raises:
        DoesNotExist: no execution has that context id.
    """
    found = await repository.locate(number)
    if found is None:
        raise DoesNotExist(f"No execution with the context id {number}")
    return found


async def forwarded(
    call: Call, namespace: str, objectid: str, data: Any, parameters: dict[str, Any], number: int
) -> Any:
    """``call`` made again in ``namespace``, through the dispatcher as the caller: found by its
    context id, the execution is in another namespace than the call's, which the caller may or
    may not use. One it may not use is not there for it."""
    try:
        return await call.services.call(
            call.identity,
            call.method,
            call.endpoint,
            objectid=objectid,
            namespace=namespace,
            data=data,
            parameters=parameters,
        )
    except PermissionDenied:
        raise DoesNotExist(f"No execution with the context id {number}") from None
