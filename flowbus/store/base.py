"""The Store seam: what endpoints may ask of storage.

Objects are JSON objects kept per ``collection`` and ``namespace``; every stored object has
``id``, ``created`` and ``updated`` at its top level. Implementations must make each write
durable before it returns, and keep namespaces apart: the same id in two namespaces is two
objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flowbus.params import Query

__all__ = ["Delete", "Insert", "Patch", "Prepare", "Store", "Write"]

Prepare = Callable[[dict[str, Any]], str]
"""Called with an object about to be written; validates it and returns its search text.

It raises a FlowBusError (typically InvalidData) to refuse the write.
"""


@dataclass(frozen=True, slots=True)
class Insert:
    """A write of :meth:`Store.transaction`: what :meth:`Store.insert` does."""

    collection: str
    namespace: str
    obj: dict[str, Any]
    prepare: Prepare


@dataclass(frozen=True, slots=True)
class Patch:
    """A write of :meth:`Store.transaction`: what :meth:`Store.patch` does."""

    collection: str
    namespace: str
    objectid: str
    changes: dict[str, Any]
    prepare: Prepare


@dataclass(frozen=True, slots=True)
class Delete:
    """A write of :meth:`Store.transaction`: what :meth:`Store.delete` does."""

    collection: str
    namespace: str
    objectid: str


Write = Insert | Patch | Delete


class Store(Protocol):
    """Async storage of JSON objects, with paging, filters and full-text search."""

    async def open(self) -> None:
        """Open the store (create its schema if needed)."""

    async def close(self) -> None:
        """Finish pending writes and release every resource."""

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        """Return the object, or None if there is none with that id in that namespace."""

    def peek(self, collection: str, namespace: str, objectid: str) -> bytes | None:
        """The object's JSON when it can be had at once (from a cache), else None.

        Never waits, never raises; None says nothing of whether the object exists (ask ``get``).
        """

    async def insert(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> dict[str, Any]:
        """Store a new object; ``obj["id"]`` is its id. Sets ``created`` and ``updated``.

        Raises:
            Conflict: an object with that id exists in that namespace.
        """

    async def patch(
        self, collection: str, namespace: str, objectid: str, changes: dict[str, Any], prepare: Prepare
    ) -> dict[str, Any]:
        """Merge ``changes`` into the object's top-level fields, move ``updated``, return it.

        Raises:
            DoesNotExist: no such object.
        """

    async def delete(self, collection: str, namespace: str, objectid: str) -> dict[str, Any]:
        """Delete the object and return what it was.

        Raises:
            DoesNotExist: no such object.
        """

    async def transaction(self, writes: Sequence[Write]) -> list[dict[str, Any]]:
        """Make ``writes`` in order, all or none, durable together.

        Each write sees those before it (an Insert, then a Patch of the same object, works).
        Returns what :meth:`insert`, :meth:`patch` and :meth:`delete` would have returned, in
        order.

        Raises:
            FlowBusError: the first refusal (Conflict, DoesNotExist, InvalidData...): then none
                of the writes is kept.
        """

    async def query(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        """Return one page of objects matching ``query.filters`` and the total count."""

    async def search(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        """Like ``query``, but ranked by full-text relevance to ``query.q``, best first."""
