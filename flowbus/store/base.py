"""The Store seam: what endpoints may ask of storage.

Objects are JSON objects kept per ``collection`` and ``namespace``; every stored object has
``id``, ``created``, ``updated`` and ``version`` at its top level (:data:`META`). ``version`` is
1 when the object is created and grows by one with every write of it, so that a writer can say
"only if nobody wrote it since I read it" (``expect=``): a stale version is refused CONFLICT.

Every write, single or in a transaction, records a :class:`Change` in the store's change log
in the same commit, with a sequence number (``seq``) that grows in commit order. A reader that
remembers the last ``seq`` it saw resumes with :meth:`Store.changes` after a restart or a crash
and misses nothing that was acknowledged; :meth:`Store.wait_changed` tells it when to look.

Implementations must make each write durable before it returns, keep namespaces apart (the same
id in two namespaces is two objects), and validate (run ``prepare``) on the event loop, before
the write is queued, never inside the writer's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

from flowbus.params import Query

__all__ = [
    "CREATED",
    "DELETED",
    "META",
    "UPDATED",
    "Change",
    "Checked",
    "Delete",
    "Encoded",
    "Get",
    "Insert",
    "Patch",
    "Peekable",
    "Prepare",
    "Store",
    "Write",
]

META = ("id", "created", "updated", "version")
"""The fields the store keeps itself; whatever a caller gives for them is not the object's data."""

CREATED: Literal["CREATED"] = "CREATED"
UPDATED: Literal["UPDATED"] = "UPDATED"
DELETED: Literal["DELETED"] = "DELETED"

Prepare = Callable[[dict[str, Any]], str]
"""Called with an object about to be written; validates it and returns its search text.

It raises a FlowBusError (typically InvalidData) to refuse the write. It runs on the event loop.
A patch needs it (only the store knows the merged object); an insert whose object was checked
before it was handed over passes :class:`Checked`.
"""


class Checked:
    """The :data:`Prepare` of an object its writer checked already: it answers the search text
    found then, so that the store does not call back into the writer."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, obj: dict[str, Any]) -> str:
        return self.text


class Encoded(dict[str, Any]):
    """An object as a store answers a write of it, with the JSON text it was stored as: a cache
    keeps that text instead of encoding the object again. It is a dict like any other; ``json``
    is the object as written, whatever is done to the dict afterwards."""

    __slots__ = ("json",)

    json: str


class Change:
    """One committed write, as the change log keeps it.

    Attributes:
        seq: its place in commit order: larger than that of every change committed before it.
        kind: CREATED, UPDATED or DELETED.
        collection, namespace, objectid: the object written.
        version: the object's version after the write (for DELETED, the version it had).
        data: the object after the write; for DELETED, the object as it was. A store may hand the
            change its JSON text instead (``body``): it is decoded on first use, so a reader that
            only needs the rest (a cache judging versions) never pays for it.
        at: when it was committed (RFC 3339, UTC).
    """

    __slots__ = ("_body", "_data", "at", "collection", "kind", "namespace", "objectid", "seq", "version")

    def __init__(
        self,
        seq: int,
        kind: str,
        collection: str,
        namespace: str,
        objectid: str,
        version: int,
        data: dict[str, Any] | None = None,
        at: str = "",
        *,
        body: str | bytes | None = None,
    ) -> None:
        self.seq = seq
        self.kind = kind
        self.collection = collection
        self.namespace = namespace
        self.objectid = objectid
        self.version = version
        self.at = at
        self._data = data
        self._body = body if data is None else None

    @property
    def data(self) -> dict[str, Any]:
        if self._body is not None:
            self._data = orjson.loads(self._body)
            self._body = None
        return self._data if self._data is not None else {}

    @property
    def body(self) -> str | bytes | None:
        """The JSON text of :attr:`data` while it has not been decoded, else None."""
        return self._body

    def _fields(self) -> tuple[Any, ...]:
        return (self.seq, self.kind, self.collection, self.namespace, self.objectid, self.version, self.data, self.at)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Change):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable data: not hashable, as the dataclass was not

    def __repr__(self) -> str:
        return (
            f"Change(seq={self.seq!r}, kind={self.kind!r}, collection={self.collection!r},"
            f" namespace={self.namespace!r}, objectid={self.objectid!r}, version={self.version!r},"
            f" data={self.data!r}, at={self.at!r})"
        )


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
    expect: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """A write of :meth:`Store.transaction`: what :meth:`Store.delete` does."""

    collection: str
    namespace: str
    objectid: str
    expect: int | None = None


@dataclass(frozen=True, slots=True)
class Get:
    """A read inside :meth:`Store.transaction`: the object as the transaction sees it at that
    point (after the writes before it), or None. With ``expect``, the transaction refuses
    CONFLICT unless the object exists with that version (a check that nobody wrote it since)."""

    collection: str
    namespace: str
    objectid: str
    expect: int | None = None


Write = Insert | Patch | Delete | Get


class Store(Protocol):
    """Async storage of JSON objects, with paging, filters, full-text search and a change log."""

    async def open(self) -> None:
        """Open the store (create its schema if needed)."""

    async def close(self) -> None:
        """Finish pending writes and release every resource."""

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        """Return the object, or None if there is none with that id in that namespace."""

    async def insert(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> dict[str, Any]:
        """Store a new object; ``obj["id"]`` is its id. Sets ``created``, ``updated`` and ``version`` (1).

        Raises:
            Conflict: an object with that id exists in that namespace.
        """

    async def patch(
        self,
        collection: str,
        namespace: str,
        objectid: str,
        changes: dict[str, Any],
        prepare: Prepare,
        *,
        expect: int | None = None,
        base: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Merge ``changes`` into the object's top-level fields, move ``updated``, add one to
        ``version``, return the object as stored.

        Without ``expect``, the merge is made on the latest version (the store retries when
        another writer came between its read and its write).

        ``base`` is the object as the caller read it, at version ``expect``: the store may merge
        on it instead of reading the object again (a compare-and-set loop reads once per turn).
        The write still checks the version: a stale ``base`` never overwrites a newer object.

        Raises:
            DoesNotExist: no such object.
            Conflict: ``expect`` is given and the object's version is another.
        """

    async def delete(
        self, collection: str, namespace: str, objectid: str, *, expect: int | None = None
    ) -> dict[str, Any]:
        """Delete the object and return what it was.

        Raises:
            DoesNotExist: no such object.
            Conflict: ``expect`` is given and the object's version is another.
        """

    async def transaction(self, writes: Sequence[Write]) -> list[dict[str, Any] | None]:
        """Make ``writes`` in order, all or none, durable together, as one commit.

        Each write sees those before it (an Insert, then a Patch of the same object, works);
        a :class:`Get` reads the object as the transaction sees it there. Returns what
        :meth:`insert`, :meth:`patch`, :meth:`delete` would have returned, and for each Get the
        object or None, in order.

        Raises:
            FlowBusError: the first refusal (Conflict, DoesNotExist, InvalidData...): then none
                of the writes is kept.
        """

    async def query(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        """Return one page of objects matching ``query.filters`` and the total count.

        The page holds at most ``query.limit`` objects, and stops early once the objects' JSON
        passes ``query.max_bytes`` (the first object is always given): the caller learns how
        many it got from the list's length.

        With ``query.after`` the page is cut by cursor, not by offset: the objects strictly
        after the cursor (:func:`~flowbus.store.paging.cursor_of`) in the order of ``query.sort``
        with the id breaking ties (see :mod:`flowbus.store.paging`); the total still counts
        every matching object.

        Raises:
            InvalidRequest: ``query.after`` is not a cursor of this order.
        """

    async def search(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        """Like ``query``, but ranked by full-text relevance to ``query.q``, best first.

        Raises:
            InvalidRequest: a cursor (``query.after``) is given with search terms: a ranked
                search pages by offset only.
        """

    async def namespaces(self, collection: str) -> list[str]:
        """The namespaces that hold at least one object of ``collection``, sorted (by code point).

        A namespace whose last object of ``collection`` was deleted is not among them.
        """

    async def changes(self, since: int, limit: int = 1000) -> list[Change]:
        """The changes committed after ``since``, in ``seq`` order, at most ``limit`` of them.

        Never with a gap, but possibly short of the newest: a store may answer from what this
        process committed itself, without the changes another process committed after that
        (they come with a later call; a reader resumes from the last ``seq`` it got).

        Raises:
            Gone: ``since`` is older than what the change log still keeps (see :meth:`first_seq`).
        """

    async def last_seq(self) -> int:
        """The ``seq`` of the latest committed change (0 when there is none)."""

    async def first_seq(self) -> int:
        """The oldest ``since`` that :meth:`changes` still answers completely: changes after it
        are all kept (0 while the log was never trimmed)."""

    async def trim_changes(self, before: str) -> int:
        """Forget the changes committed before ``before`` (RFC 3339, UTC); returns how many went."""

    async def wait_changed(self, since: int, timeout: float) -> None:
        """Return once changes after ``since`` may exist (committed by this process or any other
        sharing the store), or after ``timeout`` seconds, whichever comes first."""


@runtime_checkable
class Peekable(Protocol):
    """A store that can answer some reads at once, without waiting (a cache)."""

    def peek(self, collection: str, namespace: str, objectid: str) -> tuple[bytes, int | None] | None:
        """The object's JSON and its version when they can be had at once, else None.

        Never waits, never raises; None says nothing of whether the object exists (ask ``get``).
        """
