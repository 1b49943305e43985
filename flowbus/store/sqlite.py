"""The embedded store: one SQLite file in WAL mode, one writer with group commit.

Writes are validated on the event loop (their ``prepare`` runs there), then queued and applied
in batches: the writer thread takes everything queued so far, applies the writes one after the
other in one transaction and commits the batch once. A refused write (CONFLICT, DO_NOT_EXIST)
refuses before it writes, so it undoes nothing of the others; a write that fails any other way
makes the batch run again with a savepoint per write. Every caller is answered only after that
commit, so an acknowledged write survives ``kill -9``; with ``synchronous=FULL`` (the default)
it survives power loss too. Many concurrent writers share one commit instead of paying for one
each.

A patch is prepared against the version of the object it read, and the writer makes it only if
the object is still at that version (compare and set); when another writer came in between, the
patch is read, merged and validated again. Every write also records its change in the
``changes`` table in the same transaction: the change log, whose ``seq`` grows in commit order
(there is one writer per database file at a time: SQLite's write lock).

The writer owns a plain ``sqlite3`` connection in a thread of its own, which drives itself:
the writes of each turn of the event loop reach it as one item of a thread-safe queue, and as
soon as one batch is committed it takes the next, without waiting for the event loop; only the
answers go back through the loop. Reads go through ``aiosqlite`` on their own connection and
never wait for the writer (WAL lets readers and the writer run side by side).

SQLite has no way to tell one process that another committed: :meth:`SQLiteStore.wait_changed`
wakes at once for this process's commits, and finds other processes' by reading the change
log's last ``seq`` every :data:`POLL` seconds, only while somebody waits.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from flowbus.errors import Conflict, DoesNotExist, FlowBusError, Gone, InternalError, InvalidRequest, Unavailable
from flowbus.params import Query, check_field_name
from flowbus.store.base import (
    CREATED,
    DELETED,
    META,
    UPDATED,
    Change,
    Delete,
    Encoded,
    Get,
    Insert,
    Patch,
    Prepare,
    Write,
)

__all__ = ["POLL", "SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (collection, namespace, id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS objects_fts USING fts5(text, tokenize = 'unicode61');
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    collection TEXT NOT NULL,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_NAMESPACES = """
WITH RECURSIVE ns(name) AS (
    SELECT (SELECT min(namespace) FROM objects WHERE collection = ?1)
    UNION ALL
    SELECT (SELECT min(namespace) FROM objects WHERE collection = ?1 AND namespace > ns.name)
    FROM ns WHERE ns.name IS NOT NULL
)
SELECT name FROM ns WHERE name IS NOT NULL
"""
"""The distinct namespaces of a collection, one look-up in the (collection, namespace, id) index
for each, however many objects each holds."""
_COLUMNS = frozenset({"id", "created", "updated", "version"})
_MAX_BATCH = 512
_RETRIES = 20  # a patch prepared again this often without getting through answers CONFLICT
_FETCH = 16  # rows of a page read at a time
_TERM = re.compile(r"\w+", re.UNICODE)

POLL = 0.05
"""Seconds between two looks at the change log for other processes' commits, while a
:meth:`SQLiteStore.wait_changed` waits."""

WriteOp = Callable[[sqlite3.Connection], Any]
"""One write, run in the writer thread. It must raise a FlowBusError only before it writes."""


class _Unexpected(Exception):
    """An op failed other than by refusing: the batch is run again, op by op in savepoints."""


class _Job:
    """Work for the writer thread outside any transaction (open, close, a trim): ``fn()``'s
    outcome settles ``future`` on the event loop. Without ``fn`` it stops the thread."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any] | None, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


class _Write:
    """A queued write: what to run, and whom to answer."""

    __slots__ = ("future", "op")

    def __init__(self, op: WriteOp, future: asyncio.Future[Any]) -> None:
        self.op = op
        self.future = future


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made before objects had versions up to date (writer thread)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(objects)")}
    if "version" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ALTER TABLE objects ADD COLUMN version INTEGER NOT NULL DEFAULT 1")
    conn.execute("UPDATE objects SET body = json_set(body, '$.version', 1)")
    conn.execute("COMMIT")


def _rfc3339(moment: str) -> str:
    """``moment`` in the store's own form (UTC, whole seconds), for comparing with ``at``."""
    try:
        parsed = datetime.fromisoformat(moment)
    except (TypeError, ValueError):
        raise InvalidRequest(f"Not an RFC 3339 time: {str(moment)[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Moved(Conflict):
    """A compare-and-set write found another version than the one it was prepared against, and
    the caller asked for none in particular: the store prepares it again on the latest one."""


class _Insert:
    """An insert, prepared on the event loop (a :data:`WriteOp`). Consecutive inserts of a batch
    are made together by :func:`_insert_many`; one alone, or one of a batch run again op by op,
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
        _log(conn, CREATED, self.collection, self.namespace, stored["id"], 1, self.body, stored["updated"])
        return stored


class _Patch:
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
            raise _Moved()  # not reached: the version was the one read, so the update was made
        seq = rows[0][0]
        if self.text:
            conn.execute("INSERT OR REPLACE INTO objects_fts (rowid, text) VALUES (?, ?)", (seq, self.text))
        else:
            conn.execute("DELETE FROM objects_fts WHERE rowid = ?", (seq,))
        _log(
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


class _Delete:
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
        _log(conn, DELETED, self.collection, self.namespace, self.objectid, version, body, _now())
        found: dict[str, Any] = orjson.loads(body)
        return found


class _Get:
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


class _Transaction:
    """Several writes as one :data:`WriteOp`, in a savepoint of their own: when one refuses,
    those before it are undone, so that the whole refuses before it has written anything."""

    __slots__ = ("ops",)

    def __init__(self, ops: list[WriteOp]) -> None:
        self.ops = ops

    def __call__(self, conn: sqlite3.Connection) -> list[Any]:
        mark = _logged_mark(conn)
        conn.execute("SAVEPOINT writes")
        try:
            results = [op(conn) for op in self.ops]
        except BaseException:
            conn.execute("ROLLBACK TO writes")
            conn.execute("RELEASE writes")
            _forget_logged(conn, mark)
            raise
        conn.execute("RELEASE writes")
        return results


class _Writer(sqlite3.Connection):
    """The writer thread's connection: it also notes the changes its transaction logged, so that
    once committed they are known without reading them back (see :class:`_Recent`)."""

    logged: list[_Logged]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logged = []


_Logged = tuple[int, str, str, str, str, int, str, str]
"""A change as logged: seq, kind, collection, namespace, objectid, version, body, at."""


def _logged_mark(conn: sqlite3.Connection) -> int:
    return len(conn.logged) if isinstance(conn, _Writer) else 0


def _forget_logged(conn: sqlite3.Connection, mark: int) -> None:
    """A savepoint was rolled back: what it logged was not written."""
    if isinstance(conn, _Writer):
        del conn.logged[mark:]


_LOG = "INSERT INTO changes (at, kind, collection, namespace, id, version, body) VALUES (?, ?, ?, ?, ?, ?, ?)"


def _log(
    conn: sqlite3.Connection,
    kind: str,
    collection: str,
    namespace: str,
    objectid: str,
    version: int,
    body: str,
    at: str,
) -> None:
    """Record a write in the change log, in the write's own transaction."""
    seq = conn.execute(_LOG, (at, kind, collection, namespace, objectid, version, body)).lastrowid
    if isinstance(conn, _Writer) and seq is not None:
        conn.logged.append((seq, kind, collection, namespace, objectid, version, body, at))


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
    version, else :class:`_Moved` (prepare it again)."""
    if version == wanted:
        return
    if expected:
        raise Conflict(f"Object {objectid!r} has changed: its version is {version}, not {wanted}")
    raise _Moved()


def _check_version(current: dict[str, Any], expect: int | None) -> None:
    if expect is not None and current.get("version", 1) != expect:
        raise Conflict(
            f"Object {current.get('id')!r} has changed: its version is {current.get('version', 1)}, not {expect}"
        )


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


def _insert_many(conn: sqlite3.Connection, ops: list[_Insert]) -> list[Any] | None:
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
    if isinstance(conn, _Writer) and last is not None:
        seq = last - len(ops)
        for op in ops:
            seq += 1
            stored = op.stored
            row = (seq, CREATED, op.collection, op.namespace, stored["id"], 1, op.body, stored["updated"])
            conn.logged.append(row)
    return [op.stored for op in ops]


_stamp: tuple[int, str] = (0, "")


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _now() -> str:
    """The current UTC time as stored (RFC 3339, whole seconds), formatted once per second."""
    global _stamp
    second = int(time.time())
    if second != _stamp[0]:
        _stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


class _Recent:
    """The changes this process committed lately, by seq (event loop thread only).

    The change feed asks for the changes after the last one it published; when the next one is
    here, it and those right after it are answered without reading them back from the log (and
    their JSON is decoded only if a handler needs it). A seq not here (a change of another
    process sharing the file, or one older than what is kept) is read from the log: seqs come
    without gaps, so a run of consecutive seqs held here is exactly what the log holds.
    """

    __slots__ = ("_bytes", "_changes", "_order", "newest")

    MAX_CHANGES = 4096
    MAX_BYTES = 8 << 20

    def __init__(self) -> None:
        self._changes: dict[int, _Logged] = {}
        self._order: collections.deque[int] = collections.deque()
        self._bytes = 0
        self.newest = 0  # the latest seq this process committed (kept when the change is not)

    def __contains__(self, seq: int) -> bool:
        return seq in self._changes

    def add(self, logged: list[_Logged]) -> None:
        changes, order = self._changes, self._order
        for change in logged:
            changes[change[0]] = change
            order.append(change[0])
            self._bytes += len(change[6])
        if logged:
            self.newest = max(self.newest, logged[-1][0])
        while order and (len(order) > self.MAX_CHANGES or self._bytes > self.MAX_BYTES):
            self._drop(order.popleft())

    def after(self, since: int, limit: int) -> list[Change] | None:
        """The changes after ``since`` (at most ``limit``), if they are all held here: a run of
        consecutive seqs that reaches the newest change held. None when it breaks off before (a
        change of another process came between): the caller reads the log."""
        out: list[Change] = []
        changes = self._changes
        seq = since + 1
        while len(out) < limit and (c := changes.get(seq)) is not None:
            out.append(Change(c[0], c[1], c[2], c[3], c[4], c[5], None, c[7], body=c[6]))
            seq += 1
        if len(out) < limit and (not self._order or seq <= self._order[-1]):
            return None
        return out

    def forget_through(self, seq: int) -> None:
        """The log no longer holds the changes up to ``seq``: neither does this."""
        order = self._order
        while order and order[0] <= seq:
            self._drop(order.popleft())

    def _drop(self, seq: int) -> None:
        change = self._changes.pop(seq, None)
        if change is not None:
            self._bytes -= len(change[6])


class SQLiteStore:
    """The default :class:`~flowbus.store.Store`: a SQLite file.

    Args:
        path: the database file; its folder is created if needed.
        synchronous: SQLite's ``synchronous`` setting, ``FULL`` or ``NORMAL``. Both keep
            acknowledged writes across a crash of the process; FULL also across power loss.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in {"FULL", "NORMAL"}:
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self._writer: _Writer | None = None
        self._reader: aiosqlite.Connection | None = None
        # While a page's statement is open, the reader connection stays in its read transaction:
        # any other read on it would see that snapshot, not the writes committed since.
        self._paging = asyncio.Lock()
        self._pending: list[_Write] = []  # written during this turn of the event loop
        self._requests: queue.SimpleQueue[list[_Write] | _Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committed = asyncio.Event()  # set (and replaced) whenever this process commits
        self._recent = _Recent()
        self._closing = False

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._thread = threading.Thread(target=self._serve_writes, name="flowbus-writer", daemon=True)
        self._thread.start()
        try:
            self._writer = await self._job(self._open_writer)
            self._reader = await aiosqlite.connect(self.path)
            await self._reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await self.close()  # the reader's thread would keep the process alive
            raise

    def _open_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, factory=_Writer)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.executescript(_SCHEMA)
        _migrate(conn)
        return conn

    async def close(self) -> None:
        self._closing = True
        self._committed.set()  # whoever waits for changes looks once more, and goes
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await self._job(writer.close)  # after every write queued before it
        if self._thread is not None:
            thread, self._thread = self._thread, None
            await self._job(None)  # the stop mark: the thread answers it, then returns
            thread.join()  # the thread is past its last statement by now

    # -- writes ---------------------------------------------------------------------------

    async def _write(self, op: WriteOp) -> Any:
        if self._closing or self._writer is None:
            raise Unavailable("The store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(_Write(op, future))
        return await future

    def _flush(self) -> None:
        """Hand the writes queued during one turn of the event loop to the writer thread, as one."""
        if self._pending:
            self._requests.put(self._pending)
            self._pending = []

    async def _job(self, fn: Callable[[], Any] | None) -> Any:
        """Run ``fn`` in the writer thread, between two batches, and return what it returns
        (None: stop the thread once every write queued before is committed)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flush()
        self._requests.put(_Job(fn, future))
        return await future

    def _serve_writes(self) -> None:
        """The writer thread: take everything queued, commit its writes in batches of at most
        :data:`_MAX_BATCH`, and go straight on, without waiting for the event loop.

        Jobs run in their place in the queue: the writes queued before them are committed
        first. A job without a function is the stop mark.
        """
        while True:
            taken = [self._requests.get()]
            while True:
                try:
                    taken.append(self._requests.get_nowait())
                except queue.Empty:
                    break
            writes: list[_Write] = []
            for item in taken:
                if isinstance(item, list):
                    writes += item
                    continue
                self._commit_all(writes)
                writes = []
                self._run_job(item)
                if item.fn is None:
                    return
            self._commit_all(writes)

    def _commit_all(self, writes: list[_Write]) -> None:
        for start in range(0, len(writes), _MAX_BATCH):
            self._commit(writes[start : start + _MAX_BATCH])

    def _commit(self, writes: list[_Write]) -> None:
        """Apply and commit a batch (writer thread); its callers are answered on the event loop."""
        ops = [write.op for write in writes]
        logged: list[_Logged] = []
        try:
            results = self._apply(ops)
            assert self._writer is not None
            logged, self._writer.logged = self._writer.logged, []
        except Exception as exc:  # the commit itself failed: nobody's write is kept
            results = [_as_flowbus_error(exc)] * len(ops)
        self._settle(self._answer, writes, results, logged)

    def _run_job(self, job: _Job) -> None:
        try:
            result = job.fn() if job.fn is not None else None
        except Exception as exc:
            self._settle(_fail, job.future, exc)
        else:
            self._settle(_succeed, job.future, result)

    def _settle(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the event loop (from the writer thread)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _answer(self, batch: list[_Write], results: list[Any], logged: list[_Logged]) -> None:
        """Answer the callers of a committed batch, and wake whoever waits for changes."""
        self._recent.add(logged)
        for write, result in zip(batch, results, strict=True):
            if write.future.done():
                continue
            if isinstance(result, BaseException):
                write.future.set_exception(result)
            else:
                write.future.set_result(result)
        committed, self._committed = self._committed, asyncio.Event()
        committed.set()

    def _apply(self, ops: list[WriteOp]) -> list[Any]:
        """Apply a batch in one transaction and commit it (writer thread).

        Every op of this store refuses (raises a FlowBusError) before it writes anything, so the
        batch first runs without a savepoint per op. Should an op fail in any other way, possibly
        halfway through its writes, the batch is rolled back and run again with each op in its
        own savepoint, so that only that op is undone.
        """
        try:
            return self._transaction(ops, _run_plain)
        except _Unexpected:
            return self._transaction(ops, _run_isolated)

    def _transaction(
        self, ops: list[WriteOp], run: Callable[[sqlite3.Connection, list[WriteOp]], list[Any]]
    ) -> list[Any]:
        conn = self._writer
        assert conn is not None
        conn.logged = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = run(conn, ops)
            conn.execute("COMMIT")
        except BaseException:
            conn.logged = []
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    async def insert(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> dict[str, Any]:
        result: dict[str, Any] = await self._write(_Insert(collection, namespace, obj, prepare))
        return result

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
        known = base if base is not None and expect is not None and base.get("version") == expect else None
        for _ in range(_RETRIES):
            current = known or await self.get(collection, namespace, objectid)
            known = None  # a retry reads the object again
            if current is None:
                raise DoesNotExist(f"Object {objectid!r} does not exist")
            _check_version(current, expect)
            op = _Patch(collection, namespace, current, changes, prepare, expect is not None)
            try:
                result: dict[str, Any] = await self._write(op)
            except _Moved:
                continue  # another writer came between the read and the write: merge again
            return result
        raise Conflict(f"Object {objectid!r} kept changing while it was being written; try again")

    async def delete(
        self, collection: str, namespace: str, objectid: str, *, expect: int | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._write(_Delete(collection, namespace, objectid, expect))
        return result

    async def transaction(self, writes: Sequence[Write]) -> list[dict[str, Any] | None]:
        if not writes:
            return []
        for _ in range(_RETRIES):
            ops = await self._prepare_all(writes)
            try:
                results: list[dict[str, Any] | None] = await self._write(_Transaction(ops))
            except _Moved:
                continue
            return results
        raise Conflict("The objects of the transaction kept changing while it was being written; try again")

    async def _prepare_all(self, writes: Sequence[Write]) -> list[WriteOp]:
        """The ops of a transaction, validated on the event loop; each sees the writes before it."""
        seen: dict[tuple[str, str, str], dict[str, Any] | None] = {}

        async def current(key: tuple[str, str, str]) -> dict[str, Any] | None:
            return seen[key] if key in seen else await self.get(*key)

        ops: list[WriteOp] = []
        for write in writes:
            if isinstance(write, Insert):
                insert = _Insert(write.collection, write.namespace, write.obj, write.prepare)
                seen[(write.collection, write.namespace, write.obj["id"])] = insert.stored
                ops.append(insert)
                continue
            key = (write.collection, write.namespace, write.objectid)
            if isinstance(write, Get):
                ops.append(_Get(*key, write.expect))
                continue
            found = await current(key)
            if found is None:
                raise DoesNotExist(f"Object {write.objectid!r} does not exist")
            _check_version(found, write.expect)
            if isinstance(write, Patch):
                patch = _Patch(
                    write.collection, write.namespace, found, write.changes, write.prepare, write.expect is not None
                )
                seen[key] = patch.merged
                ops.append(patch)
            elif isinstance(write, Delete):
                seen[key] = None
                ops.append(_Delete(*key, found.get("version", 1)))
            else:
                raise TypeError(f"not a store write: {write!r}")
        return ops

    # -- the change log -------------------------------------------------------------------

    async def changes(self, since: int, limit: int = 1000) -> list[Change]:
        if since + 1 in self._recent:  # what this process committed lately: not read back
            held = self._recent.after(since, limit)
            if held is not None:
                return held
        rows = await self._read(
            "SELECT seq, kind, collection, namespace, id, version, body, at FROM changes"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit),
        )
        first = await self.first_seq()  # read after the rows: a trim in between is seen
        if since < first:
            raise Gone(f"Changes after {since} are no longer kept (the log starts after {first})")
        return [Change(r[0], r[1], r[2], r[3], r[4], r[5], None, r[7], body=r[6]) for r in rows]

    async def last_seq(self) -> int:
        rows = await self._read("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)", ())
        seq: int = rows[0][0]
        return seq

    async def first_seq(self) -> int:
        rows = await self._read("SELECT coalesce((SELECT value FROM store_meta WHERE key = 'trimmed'), 0)", ())
        seq: int = rows[0][0]
        return seq

    async def trim_changes(self, before: str) -> int:
        cutoff = _rfc3339(before)

        def trim() -> int:
            conn = self._writer
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = conn.execute("SELECT max(seq) FROM changes WHERE at < ?", (cutoff,)).fetchone()[0]
                count = conn.execute("DELETE FROM changes WHERE seq <= ?", (last or 0,)).rowcount
                if last is not None:
                    conn.execute("INSERT OR REPLACE INTO store_meta (key, value) VALUES ('trimmed', ?)", (last,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return int(count)

        trimmed: int = await self._job(trim)
        self._recent.forget_through(await self.first_seq())
        return trimmed

    async def wait_changed(self, since: int, timeout: float) -> None:
        """Own commits wake at once; another process's are seen by looking every :data:`POLL` s.

        The log is read only when a look is due, or when this process committed after ``since``
        but its next change is not held here (another process's change came between): a caller
        that has caught up with this process's own commits costs no read per commit.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        recent = self._recent
        look = False
        while not self._closing:
            if since + 1 in recent:
                return
            if (look or since < recent.newest) and await self.last_seq() > since:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:  # not wait_for(): on 3.11 it can swallow a cancellation that races the wake-up
                async with asyncio.timeout(min(POLL, remaining)):
                    await self._committed.wait()
                look = False
            except TimeoutError:
                look = True

    # -- reads ----------------------------------------------------------------------------

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        rows = await self._read(
            "SELECT body FROM objects WHERE collection = ? AND namespace = ? AND id = ?",
            (collection, namespace, objectid),
        )
        if not rows:
            return None
        found: dict[str, Any] = orjson.loads(rows[0][0])
        return found

    async def query(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        where, args = _where(collection, namespace, query.filters)
        return await self._page(f"objects o WHERE {where}", args, f"ORDER BY {_order(query)}", query)

    async def search(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        match = _match_expression(query.q or "")
        if match is None:
            return await self.query(collection, namespace, query)
        where, args = _where(collection, namespace, query.filters)
        joined = f"objects_fts f JOIN objects o ON o.seq = f.rowid WHERE objects_fts MATCH ? AND {where}"
        return await self._page(joined, (match, *args), "ORDER BY f.rank, o.seq", query)

    async def namespaces(self, collection: str) -> list[str]:
        rows = await self._read(_NAMESPACES, (collection,))
        return sorted(row[0] for row in rows)

    async def _page(
        self, source: str, args: tuple[Any, ...], order: str, query: Query
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of ``SELECT ... FROM {source}`` and the count of all its rows, read by one
        statement (one snapshot: the total always agrees with the page, whatever commits).

        Rows are read a few at a time, and the page ends after the object whose JSON passes
        ``query.max_bytes``: a page of huge objects never sits in memory whole."""
        if self._reader is None:
            raise Unavailable("The store is closed")
        sql = f"SELECT o.body, (SELECT count(*) FROM {source}) FROM {source} {order} LIMIT ? OFFSET ?"
        items: list[dict[str, Any]] = []
        total: int | None = None
        size = 0
        async with self._paging, self._reader.execute(sql, (*args, *args, query.limit, query.offset)) as cursor:
            while size <= query.max_bytes:
                rows = await cursor.fetchmany(_FETCH)
                if not rows:
                    break
                for body, count in rows:
                    total = count
                    items.append(orjson.loads(body))
                    size += len(body)
                    if size > query.max_bytes:
                        break
        if total is None:
            # past the end: the statement gave no row to carry the count
            total = (await self._read(f"SELECT count(*) FROM {source}", args))[0][0] if query.offset else 0
        return items, total

    async def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        if self._reader is None:
            raise Unavailable("The store is closed")
        async with self._paging:
            return list(await self._reader.execute_fetchall(sql, args))


def _run_plain(conn: sqlite3.Connection, ops: list[WriteOp]) -> list[Any]:
    """Run ``ops`` in order, consecutive inserts together; a refusal is the op's result."""
    results: list[Any] = []
    for start, end in _runs(ops):
        many = _insert_many_plain(conn, ops[start:end]) if end - start > 1 else None
        results += many if many is not None else [_plain(conn, op) for op in ops[start:end]]
    return results


def _runs(ops: list[WriteOp]) -> Iterator[tuple[int, int]]:
    """The batch cut into runs of consecutive inserts and single other ops: (start, end) each."""
    start = 0
    while start < len(ops):
        end = start + 1
        if type(ops[start]) is _Insert:
            while end < len(ops) and type(ops[end]) is _Insert:
                end += 1
        yield start, end
        start = end


def _plain(conn: sqlite3.Connection, op: WriteOp) -> Any:
    try:
        return op(conn)
    except FlowBusError as exc:  # refused before writing
        return exc
    except Exception as exc:
        raise _Unexpected() from exc


def _insert_many_plain(conn: sqlite3.Connection, ops: list[WriteOp]) -> list[Any] | None:
    try:
        return _insert_many(conn, [op for op in ops if isinstance(op, _Insert)])  # _runs() made them all so
    except Exception as exc:
        raise _Unexpected() from exc


def _run_isolated(conn: sqlite3.Connection, ops: list[WriteOp]) -> list[Any]:
    """Run ``ops`` in order, each in its own savepoint: one that fails is undone alone."""
    return [_isolated(conn, op) for op in ops]


def _isolated(conn: sqlite3.Connection, op: WriteOp) -> Any:
    mark = _logged_mark(conn)
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        _forget_logged(conn, mark)
        return _as_flowbus_error(exc)
    conn.execute("RELEASE op")
    return result


def _as_flowbus_error(exc: Exception) -> FlowBusError:
    """A refusal as it is; anything else as INTERNAL_ERROR caused by it (logged by whoever
    answers it, under the errorid the caller gets)."""
    if isinstance(exc, FlowBusError):
        return exc
    error = InternalError()
    error.__cause__ = exc
    return error


def _field_sql(name: str) -> str:
    # The name goes into the SQL text: checked here, whoever built the Query (letters, digits, '_').
    check_field_name(name)
    return f"o.{name}" if name in _COLUMNS else f"json_extract(o.body, '$.{name}')"


def _where(collection: str, namespace: str, filters: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    clauses = ["o.collection = ?", "o.namespace = ?"]
    args: list[Any] = [collection, namespace]
    for name, value in filters.items():
        candidates = _filter_values(value)
        if not candidates:
            clauses.append(f"{_field_sql(name)} IS NULL")
            continue
        marks = ", ".join("?" * len(candidates))
        clauses.append(f"{_field_sql(name)} IN ({marks})")
        args.extend(candidates)
    return " AND ".join(clauses), tuple(args)


def _filter_values(value: Any) -> list[Any]:
    """The SQL values a filter value matches: a query-string '22' also matches the number 22."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [int(value)]
    if isinstance(value, int):
        # SQLite integers are 64-bit signed; JSON reads bigger ones as REAL.
        return [value] if -(2**63) <= value < 2**63 else [float(value)]
    if isinstance(value, float):
        return [value]
    if not isinstance(value, str):
        return [orjson.dumps(value).decode()]
    values: list[Any] = [value]
    if value in ("true", "false"):
        values.append(int(value == "true"))
    else:
        try:
            number = float(value)
        except ValueError:
            return values
        if number.is_integer() and abs(number) < 2**63:
            values.append(int(number))
        values.append(number)
    return values


def _order(query: Query) -> str:
    direction = "DESC" if query.descending else "ASC"
    if query.sort is None:
        return f"o.seq {direction}"
    return f"{_field_sql(query.sort)} {direction}, o.seq {direction}"


def _match_expression(q: str) -> str | None:
    """Turn free text into a safe FTS5 query: every term must match, as a prefix."""
    terms = _TERM.findall(q)
    if not terms:
        return None
    return " AND ".join(f'"{term}"*' for term in terms[:32])
