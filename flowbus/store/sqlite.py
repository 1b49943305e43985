"""The embedded store: one SQLite file in WAL mode, one writer with group commit.

Writes are queued and applied in batches: the writer thread takes everything queued so far,
applies the writes one after the other in one transaction and commits the batch once. A refused
write (CONFLICT, DO_NOT_EXIST, INVALID_DATA) refuses before it writes, so it undoes nothing of
the others; a write that fails any other way makes the batch run again with a savepoint per
write. Every caller is answered only after that commit, so an acknowledged write survives
``kill -9``; with ``synchronous=FULL`` (the default) it survives power loss too.
Many concurrent writers share one commit instead of paying for one each.

The writer owns a plain ``sqlite3`` connection in a thread of its own, which drives itself:
the writes of each turn of the event loop reach it as one item of a thread-safe queue, and as
soon as one batch is committed it takes the next, without waiting for the event loop; only the
answers go back through the loop. Reads go through ``aiosqlite`` on their own connection and
never wait for the writer (WAL lets readers and the writer run side by side).

Reading one object by id (``get``, what OPEN does) is served from a write-through
:class:`~flowbus.store.cache.ObjectCache` when the object is in it, with no thread hop at all.
This process's writes update the cache when they commit; a change made to the file by another
process (``flowbus user`` while the bus runs) empties it within :data:`EXTERNAL_CHECK` seconds.
"""

from __future__ import annotations

import asyncio
import logging
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

from flowbus.errors import Conflict, DoesNotExist, FlowBusError, InternalError, Unavailable
from flowbus.params import Query, check_field_name
from flowbus.store.base import Delete, Insert, Patch, Prepare, Write
from flowbus.store.cache import Key, ObjectCache

__all__ = ["EXTERNAL_CHECK", "SQLiteStore"]

logger = logging.getLogger("flowbus.store")

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
"""
_COLUMNS = frozenset({"id", "created", "updated"})
_MAX_BATCH = 512
_TERM = re.compile(r"\w+", re.UNICODE)

EXTERNAL_CHECK = 1.0
"""Seconds between two checks for changes made to the database by another process."""

WriteOp = Callable[[sqlite3.Connection], Any]
"""One write, run in the writer thread. It must raise a FlowBusError only before it writes."""


class _Unexpected(Exception):
    """An op failed other than by refusing: the batch is run again, op by op in savepoints."""


class _Job:
    """Work for the writer thread outside any transaction (open, close, a check): ``fn()``'s
    outcome settles ``future`` on the event loop. Without ``fn`` it stops the thread."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any] | None, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


class _Write:
    """A queued write: what to run, whom to answer, and which cached object it changes (a
    transaction: ``many``, the key of each of its writes and whether it deletes)."""

    __slots__ = ("deletes", "future", "key", "many", "op")

    def __init__(
        self,
        op: WriteOp,
        future: asyncio.Future[Any],
        key: Key,
        deletes: bool,
        many: tuple[tuple[Key, bool], ...] | None = None,
    ) -> None:
        self.op = op
        self.future = future
        self.key = key
        self.deletes = deletes
        self.many = many


class _Insert:
    """An insert (a :data:`WriteOp`). Consecutive inserts of a batch are made together by
    :func:`_insert_many`; one alone, or one of a batch run again op by op, calls itself."""

    __slots__ = ("collection", "namespace", "obj", "prepare")

    def __init__(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> None:
        self.collection = collection
        self.namespace = namespace
        self.obj = obj
        self.prepare = prepare

    def stage(self) -> tuple[dict[str, Any], str, str]:
        """The object as stored, its JSON and its search text; raises a FlowBusError to refuse."""
        now = _now()
        stored = {**self.obj, "created": now, "updated": now}
        text = self.prepare(stored)
        return stored, orjson.dumps(stored).decode(), text

    def __call__(self, conn: sqlite3.Connection) -> dict[str, Any]:
        stored, body, text = self.stage()
        try:
            cur = conn.execute(
                "INSERT INTO objects (collection, namespace, id, created, updated, body) VALUES (?, ?, ?, ?, ?, ?)",
                (self.collection, self.namespace, stored["id"], stored["created"], stored["updated"], body),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"An object with id {stored['id']!r} already exists") from None
        conn.execute("INSERT INTO objects_fts (rowid, text) VALUES (?, ?)", (cur.lastrowid, text))
        return stored


class _Patch:
    """A patch (a :data:`WriteOp`)."""

    __slots__ = ("changes", "collection", "namespace", "objectid", "prepare")

    def __init__(
        self, collection: str, namespace: str, objectid: str, changes: dict[str, Any], prepare: Prepare
    ) -> None:
        self.collection = collection
        self.namespace = namespace
        self.objectid = objectid
        self.changes = changes
        self.prepare = prepare

    def __call__(self, conn: sqlite3.Connection) -> dict[str, Any]:
        seq, current = _fetch_for_write(conn, self.collection, self.namespace, self.objectid)
        merged = {**current, **self.changes, "id": current["id"], "created": current["created"]}
        merged["updated"] = _now()
        text = self.prepare(merged)
        conn.execute(
            "UPDATE objects SET updated = ?, body = ? WHERE seq = ?",
            (merged["updated"], orjson.dumps(merged).decode(), seq),
        )
        conn.execute("UPDATE objects_fts SET text = ? WHERE rowid = ?", (text, seq))
        return merged


class _Delete:
    """A delete (a :data:`WriteOp`)."""

    __slots__ = ("collection", "namespace", "objectid")

    def __init__(self, collection: str, namespace: str, objectid: str) -> None:
        self.collection = collection
        self.namespace = namespace
        self.objectid = objectid

    def __call__(self, conn: sqlite3.Connection) -> dict[str, Any]:
        seq, current = _fetch_for_write(conn, self.collection, self.namespace, self.objectid)
        conn.execute("DELETE FROM objects WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM objects_fts WHERE rowid = ?", (seq,))
        return current


class _Transaction:
    """Several writes as one :data:`WriteOp`, in a savepoint of their own: when one refuses,
    those before it are undone, so that the whole refuses before it has written anything."""

    __slots__ = ("ops",)

    def __init__(self, ops: list[WriteOp]) -> None:
        self.ops = ops

    def __call__(self, conn: sqlite3.Connection) -> list[Any]:
        conn.execute("SAVEPOINT writes")
        try:
            results = [op(conn) for op in self.ops]
        except BaseException:
            conn.execute("ROLLBACK TO writes")
            conn.execute("RELEASE writes")
            raise
        conn.execute("RELEASE writes")
        return results


def _op_of(write: Write) -> tuple[WriteOp, Key, bool]:
    """The op that makes ``write``, the key of the object it changes, and whether it deletes."""
    if isinstance(write, Insert):
        op: WriteOp = _Insert(write.collection, write.namespace, write.obj, write.prepare)
        return op, (write.collection, write.namespace, write.obj["id"]), False
    key = (write.collection, write.namespace, write.objectid)
    if isinstance(write, Patch):
        return _Patch(*key, write.changes, write.prepare), key, False
    if isinstance(write, Delete):
        return _Delete(*key), key, True
    raise TypeError(f"not a store write: {write!r}")


_LAST_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'objects'), 0)"
_INSERT_MANY = """
INSERT INTO objects (seq, collection, namespace, id, created, updated, body)
SELECT ? + key, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(?)
"""
_INDEX_MANY = "INSERT INTO objects_fts (rowid, text) SELECT ? + key, value FROM json_each(?)"


def _insert_many(conn: sqlite3.Connection, ops: list[_Insert]) -> list[Any] | None:
    """Make several inserts with three statements in all, not two each (writer thread).

    Each statement lets go of the GIL while SQLite runs it and must take it back afterwards,
    which waits behind the event loop; a batch's rows therefore go to SQLite as one JSON array.
    The refused ops get their error; None when an id is taken (nothing of it was written: the
    statement undoes itself), so that the ops are run one by one and only that one refuses.
    """
    results: list[Any] = []
    rows: list[tuple[str, str, str, str, str]] = []
    texts: list[str] = []
    for op in ops:
        try:
            stored, body, text = op.stage()
        except FlowBusError as exc:
            results.append(exc)
            continue
        results.append(stored)
        rows.append((op.collection, op.namespace, stored["id"], stored["created"], body))
        texts.append(text)
    if rows:
        first: int = conn.execute(_LAST_SEQ).fetchone()[0] + 1
        try:
            conn.execute(_INSERT_MANY, (first, orjson.dumps(rows).decode()))
        except sqlite3.IntegrityError:
            return None
        conn.execute(_INDEX_MANY, (first, orjson.dumps(texts).decode()))
    return results


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


class SQLiteStore:
    """The default :class:`~flowbus.store.Store`: a SQLite file.

    Args:
        path: the database file; its folder is created if needed.
        synchronous: SQLite's ``synchronous`` setting, ``FULL`` or ``NORMAL``. Both keep
            acknowledged writes across a crash of the process; FULL also across power loss.
        cache_bytes: the most object JSON the read cache holds (0 turns it off).
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", cache_bytes: int = 64 << 20) -> None:
        if synchronous.upper() not in {"FULL", "NORMAL"}:
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pending: list[_Write] = []  # written during this turn of the event loop
        self._requests: queue.SimpleQueue[list[_Write] | _Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._closing = False
        self.cache = ObjectCache(cache_bytes)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve_writes, name="flowbus-writer", daemon=True)
        self._thread.start()
        try:
            self._writer = await self._job(self._open_writer)
            self._reader = await aiosqlite.connect(self.path)
            await self._reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await self.close()  # the reader's thread would keep the process alive
            raise
        self._watch_task = asyncio.create_task(self._watch_loop(), name="flowbus-store-watch")

    def _open_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.executescript(_SCHEMA)
        return conn

    async def close(self) -> None:
        self._closing = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
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

    async def _write(
        self, op: WriteOp, key: Key, *, deletes: bool = False, many: tuple[tuple[Key, bool], ...] | None = None
    ) -> Any:
        if self._closing:
            raise Unavailable("The store is closing")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(_Write(op, future, key, deletes, many))
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
        try:
            results = self._apply(ops)
        except Exception as exc:  # the commit itself failed: nobody's write is kept
            logger.error("store commit failed", exc_info=True)
            results = [exc if isinstance(exc, FlowBusError) else InternalError()] * len(ops)
        self._settle(self._answer, writes, results)

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

    def _answer(self, batch: list[_Write], results: list[Any]) -> None:
        """Bring the cache up to date with a committed batch, then answer its callers."""
        for write, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                continue
            if write.many is None:
                self.cache.written(write.key, None if write.deletes else result)
                continue
            for (key, deletes), one in zip(write.many, result, strict=True):
                self.cache.written(key, None if deletes else one)
        for write, result in zip(batch, results, strict=True):
            if write.future.done():
                continue
            if isinstance(result, BaseException):
                write.future.set_exception(result)
            else:
                write.future.set_result(result)

    async def _watch_loop(self) -> None:
        """Empty the cache whenever another process has committed to the database."""
        last = await self._job(self._data_version)
        while True:
            await asyncio.sleep(EXTERNAL_CHECK)
            try:
                version = await self._job(self._data_version)
            except Exception:
                logger.error("could not check the database for outside changes", exc_info=True)
                self.cache.clear()
                continue
            if version != last:
                last = version
                self.cache.clear()

    def _data_version(self) -> int:
        """SQLite's data_version as the writer sees it: it moves only when another connection commits."""
        assert self._writer is not None
        version: int = self._writer.execute("PRAGMA data_version").fetchone()[0]
        return version

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
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = run(conn, ops)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    async def insert(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> dict[str, Any]:
        op = _Insert(collection, namespace, obj, prepare)
        result: dict[str, Any] = await self._write(op, (collection, namespace, obj["id"]))
        return result

    async def patch(
        self, collection: str, namespace: str, objectid: str, changes: dict[str, Any], prepare: Prepare
    ) -> dict[str, Any]:
        op = _Patch(collection, namespace, objectid, changes, prepare)
        result: dict[str, Any] = await self._write(op, (collection, namespace, objectid))
        return result

    async def delete(self, collection: str, namespace: str, objectid: str) -> dict[str, Any]:
        op = _Delete(collection, namespace, objectid)
        result: dict[str, Any] = await self._write(op, (collection, namespace, objectid), deletes=True)
        return result

    async def transaction(self, writes: Sequence[Write]) -> list[dict[str, Any]]:
        if not writes:
            return []
        made = [_op_of(write) for write in writes]
        op = _Transaction([op for op, _, _ in made])
        many = tuple((key, deletes) for _, key, deletes in made)
        results: list[dict[str, Any]] = await self._write(op, many[0][0], many=many)
        return results

    # -- reads ----------------------------------------------------------------------------

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        if self._reader is None:
            raise Unavailable("The store is closed")
        key = (collection, namespace, objectid)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        generation = self.cache.generation
        rows = await self._read("SELECT body FROM objects WHERE collection = ? AND namespace = ? AND id = ?", key)
        if not rows:
            return None
        body: str = rows[0][0]
        self.cache.fill(key, body.encode(), generation)
        found: dict[str, Any] = orjson.loads(body)
        return found

    def peek(self, collection: str, namespace: str, objectid: str) -> bytes | None:
        if self._reader is None:
            return None
        return self.cache.peek((collection, namespace, objectid))

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

    async def _page(
        self, source: str, args: tuple[Any, ...], order: str, query: Query
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of ``SELECT ... FROM {source}`` and the count of all its rows, read by one
        statement (one snapshot: the total always agrees with the page, whatever commits)."""
        rows = await self._read(
            f"SELECT o.body, (SELECT count(*) FROM {source}) FROM {source} {order} LIMIT ? OFFSET ?",
            (*args, *args, query.limit, query.offset),
        )
        if rows:
            total = rows[0][1]
        elif query.offset:  # past the end: the statement gave no row to carry the count
            total = (await self._read(f"SELECT count(*) FROM {source}", args))[0][0]
        else:
            total = 0
        return [orjson.loads(row[0]) for row in rows], total

    async def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        if self._reader is None:
            raise Unavailable("The store is closed")
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
        return _insert_many(conn, ops)  # type: ignore[arg-type]  # _runs() made them all _Insert
    except Exception as exc:
        raise _Unexpected() from exc


def _run_isolated(conn: sqlite3.Connection, ops: list[WriteOp]) -> list[Any]:
    """Run ``ops`` in order, each in its own savepoint: one that fails is undone alone."""
    return [_isolated(conn, op) for op in ops]


def _isolated(conn: sqlite3.Connection, op: WriteOp) -> Any:
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return _as_flowbus_error(exc)
    conn.execute("RELEASE op")
    return result


def _fetch_for_write(
    conn: sqlite3.Connection, collection: str, namespace: str, objectid: str
) -> tuple[int, dict[str, Any]]:
    row = conn.execute(
        "SELECT seq, body FROM objects WHERE collection = ? AND namespace = ? AND id = ?",
        (collection, namespace, objectid),
    ).fetchone()
    if row is None:
        raise DoesNotExist(f"Object {objectid!r} does not exist")
    return row[0], orjson.loads(row[1])


def _as_flowbus_error(exc: Exception) -> FlowBusError:
    if isinstance(exc, FlowBusError):
        return exc
    logger.error("store write failed", exc_info=exc)
    return InternalError()


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
