"""The SQLite store's writes: each prepared on the event loop as an op the writer thread runs.

An op (a :data:`WriteOp`) is built on the event loop, where its object is merged, validated
(``prepare``) and encoded, and called with the writer's connection inside the batch's
transaction. It refuses (raises a FlowBusError) before it writes anything, so a refused op
undoes nothing of the others. A patch is prepared against the version of the object it read
and made only if the object is still at that version (compare and set); otherwise it raises
:class:`Moved` and the store prepares it again on the latest version.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from flowbus.errors import Conflict, DoesNotExist
from flowbus.store.base import CREATED, DELETED, META, UPDATED, Encoded, Prepare
from flowbus.store.sqlite.changes import WriterConnection, forget_logged, log_change, logged_mark
from flowbus.store.versions import Moved

__all__ = [
    "DeleteOp",
    "GetOp",
    "InsertOp",
    "PatchOp",
    "TransactionOp",
    "WriteOp",
    "insert_many",
]

WriteOp = Callable[[sqlite3.Connection], Any]
"""One write, run in the writer thread. It must raise a FlowBusError only before it writes."""


class InsertOp:
    """An insert, prepared on the event loop (a :data:`WriteOp`). Consecutive inserts of a batch
    are made together by :func:`insert_many`; one alone, or one of a batch run again op by op,
    calls itself."""

    __slots__ = ("body", "collection", "namespace", "stored", "text")

    def __init__(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> None:
        now = _now()
        stored = Encoded({k: v for k, v in obj.items() if k not in META})
        stored.update(id=obj["id"], created=now, updated=now, version=1)
        self.text = prepare(stored)
        self.collection = collection
        self.namespace = namespace
        self.stored = stored
        self.body = stored.json = orjson.dumps(stored).decode()

    def __call__(self, conn: sqlite3.Connection) -> dict[str, Any]:
        stored = self.stored
        try:
            cur = conn.execute(
                "INSERT INTO objects (collection, namespace, id, created, updated, version, body)"
                " VALUES (?, ?, ?, ?, ?, 1, ?)",
                (self.collection, self.namespace, stored["id"], stored["created"], stored["updated"], self.body),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"An object with id {stored['id']!r} already exists") from None
        if self.text:  # an object without search text has no row in the index
            conn.execute("INSERT INTO objects_fts (rowid, text) VALUES (?, ?)", (cur.lastrowid, self.text))
        log_change(conn, CREATED, self.collection, self.namespace, stored["id"], 1, self.body, stored["updated"])
        return stored


class PatchOp:
    """A patch prepared on the event loop against version ``read`` of the object: it is made
    only if the object is still at that version (a :data:`WriteOp`)."""

    __slots__ = ("body", "collection", "expected", "merged", "namespace", "objectid", "read", "text")

    def __init__(
        self,
        collection: str,
        namespace: str,
        current: dict[str, Any],
        changes: dict[str, Any],
        prepare: Prepare,
        expected: bool,
    ) -> None:
        merged = Encoded(current)
        merged.update({k: v for k, v in changes.items() if k not in META})
        self.read: int = current.get("version", 1)
        merged.update(updated=_now(), version=self.read + 1)
        self.text = prepare(merged)
        self.collection = collection
        self.namespace = namespace
        self.objectid: str = current["id"]
        self.merged = merged
        self.body = merged.json = orjson.dumps(merged).decode()
        self.expected = expected

    def __call__(self, conn: sqlite3.Connection) -> dict[str, Any]:
        merged = self.merged
        # Written only if still at the version read: one statement; else nothing is written,
        # and reading the object says why (gone, CONFLICT, or prepare it again).
        where = (self.collection, self.namespace, self.objectid, self.read)
        rows = conn.execute(
            "UPDATE objects SET updated = ?, version = ?, body = ?"
            " WHERE collection = ? AND namespace = ? AND id = ? AND version = ? RETURNING seq",
            (merged["updated"], merged["version"], self.body, *where),
        ).fetchall()
        if not rows:
            _, version = _current(conn, self.collection, self.namespace, self.objectid)
            _compare(self.objectid, version, self.read, self.expected)
            raise Moved()  # not reached: the version was the one read, so the update was made
        seq = rows[0][0]
        if self.text:
            conn.execute("INSERT OR REPLACE INTO objects_fts (rowid, text) VALUES (?, ?)", (seq, self.text))
        else:
            conn.execute("DELETE FROM objects_fts WHERE rowid = ?", (seq,))
        log_change(
            conn,
            UPDATED,
            self.collection,
            self.namespace,
            self.objectid,
            merged["version"],
            self.body,
            merged["updated"],
        )
        return merged


class DeleteOp:
    """A delete (a :data:`WriteOp`); with ``expect``, only of that version."""

    __slots__ = ("collection", "expect", "namespace", "objectid")

    def __init__(self, collection: str, namespace: str, objectid: str, expect: int | None) -> None:
        self.collection = collection
        self.namespace = namespace
        self.objectid = objectid
        self.expect = expect

    def __call__(self, conn: sqlite3.Connection) -> dict[str, Any]:
        row = _fetch(conn, self.collection, self.namespace, self.objectid)
        if row is None:
            raise DoesNotExist(f"Object {self.objectid!r} does not exist")
        seq, version, body = row
        if self.expect is not None:
            _compare(self.objectid, version, self.expect, True)
        conn.execute("DELETE FROM objects WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM objects_fts WHERE rowid = ?", (seq,))
        log_change(conn, DELETED, self.collection, self.namespace, self.objectid, version, body, _now())
        found: dict[str, Any] = orjson.loads(body)
        return found


class GetOp:
    """A read inside a transaction (a :data:`WriteOp` that writes nothing)."""

    __slots__ = ("collection", "expect", "namespace", "objectid")

    def __init__(self, collection: str, namespace: str, objectid: str, expect: int | None) -> None:
        self.collection = collection
        self.namespace = namespace
        self.objectid = objectid
        self.expect = expect

    def __call__(self, conn: sqlite3.Connection) -> dict[str, Any] | None:
        row = _fetch(conn, self.collection, self.namespace, self.objectid)
        if self.expect is not None:
            if row is None:
                raise Conflict(f"Object {self.objectid!r} does not exist (version {self.expect} was expected)")
            _compare(self.objectid, row[1], self.expect, True)
        if row is None:
            return None
        found: dict[str, Any] = orjson.loads(row[2])
        return found


class TransactionOp:
    """Several writes as one :data:`WriteOp`, in a savepoint of their own: when one refuses,
    those before it are undone, so that the whole refuses before it has written anything."""

    __slots__ = ("ops",)

    def __init__(self, ops: list[WriteOp]) -> None:
        self.ops = ops

    def __call__(self, conn: sqlite3.Connection) -> list[Any]:
        mark = logged_mark(conn)
        conn.execute("SAVEPOINT writes")
        try:
            results = [op(conn) for op in self.ops]
        except BaseException:
            conn.execute("ROLLBACK TO writes")
            conn.execute("RELEASE writes")
            forget_logged(conn, mark)
            raise
        conn.execute("RELEASE writes")
        return results


def _fetch(conn: sqlite3.Connection, collection: str, namespace: str, objectid: str) -> tuple[int, int, str] | None:
    row: tuple[int, int, str] | None = conn.execute(
        "SELECT seq, version, body FROM objects WHERE collection = ? AND namespace = ? AND id = ?",
        (collection, namespace, objectid),
    ).fetchone()
    return row


def _current(conn: sqlite3.Connection, collection: str, namespace: str, objectid: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT seq, version FROM objects WHERE collection = ? AND namespace = ? AND id = ?",
        (collection, namespace, objectid),
    ).fetchone()
    if row is None:
        raise DoesNotExist(f"Object {objectid!r} does not exist")
    return row[0], row[1]


def _compare(objectid: str, version: int, wanted: int, expected: bool) -> None:
    """Refuse a write prepared against another version: CONFLICT when the caller asked for that
    version, else :class:`Moved` (prepare it again)."""
    if version == wanted:
        return
    if expected:
        raise Conflict(f"Object {objectid!r} has changed: its version is {version}, not {wanted}")
    raise Moved()


_INSERT_MANY = """
INSERT INTO objects (seq, collection, namespace, id, created, updated, version, body)
SELECT ? + key, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[3]'), 1, json_extract(value, '$[4]')
FROM json_each(?)
"""
_LAST_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'objects'), 0)"
_INDEX_MANY = "INSERT INTO objects_fts (rowid, text) SELECT ? + key, value FROM json_each(?) WHERE value != ''"
_LOG_MANY = """
INSERT INTO changes (at, kind, collection, namespace, id, version, body)
SELECT json_extract(value, '$[3]'), 'CREATED', json_extract(value, '$[0]'), json_extract(value, '$[1]'),
       json_extract(value, '$[2]'), 1, json_extract(value, '$[4]')
FROM json_each(?)
"""


def insert_many(conn: sqlite3.Connection, ops: list[InsertOp]) -> list[Any] | None:
    """Make several inserts with four statements in all, not three each (writer thread).

    Each statement lets go of the GIL while SQLite runs it and must take it back afterwards,
    which waits behind the event loop; a batch's rows therefore go to SQLite as one JSON array.
    None when an id is taken (nothing of it was written: the statement undoes itself), so that
    the ops are run one by one and only that one refuses.
    """
    rows = [(op.collection, op.namespace, op.stored["id"], op.stored["created"], op.body) for op in ops]
    first: int = conn.execute(_LAST_SEQ).fetchone()[0] + 1
    packed = orjson.dumps(rows).decode()
    try:
        conn.execute(_INSERT_MANY, (first, packed))
    except sqlite3.IntegrityError:
        return None
    conn.execute(_INDEX_MANY, (first, orjson.dumps([op.text for op in ops]).decode()))
    last = conn.execute(_LOG_MANY, (packed,)).lastrowid
    if isinstance(conn, WriterConnection) and last is not None:
        seq = last - len(ops)
        for op in ops:
            seq += 1
            stored = op.stored
            row = (seq, CREATED, op.collection, op.namespace, stored["id"], 1, op.body, stored["updated"])
            conn.logged.append(row)
    return [op.stored for op in ops]


_stamp: tuple[int, str] = (0, "")


def _now() -> str:
    """The current UTC time as stored (RFC 3339, whole seconds), formatted once per second."""
    global _stamp
    second = int(time.time())
    if second != _stamp[0]:
        _stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]
