"""The SQLite store's writer: one connection in a thread of its own, with group commit.

Writes are queued; the writer thread takes everything queued so far, applies the ops one after
the other in one transaction (at most :data:`MAX_BATCH`) and commits the batch once, then goes
straight on to what was queued meanwhile, without waiting for the event loop: the writes of
each turn of the event loop reach it as one item of a thread-safe queue, and only the answers go
back through the loop. Every caller is answered only after the commit, so an acknowledged write
survives ``kill -9``; with ``synchronous=FULL`` it survives power loss too.

A refused op refuses before it writes, so it undoes nothing of the others; an op that fails any
other way makes the batch run again with a savepoint per op, so that only that op is lost.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flowbus.errors import FlowBusError, InternalError, Unavailable
from flowbus.store.sqlite.changes import Logged, WriterConnection, forget_logged, logged_mark
from flowbus.store.sqlite.objects import InsertOp, WriteOp, insert_many

__all__ = ["MAX_BATCH", "SCHEMA", "Writer"]

SCHEMA = """
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
MAX_BATCH = 512

Apply = Callable[[list[WriteOp]], list[Any]]
"""Applies a batch in one transaction and commits it; one result (or refusal) per op."""
Committed = Callable[[list[Logged]], None]
"""Told, on the event loop, of the changes a batch logged, once it is committed."""


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


class Writer:
    """The writer thread of one database file and its connection.

    Args:
        path: the database file.
        synchronous: SQLite's ``synchronous`` setting.
        committed: told of the changes each batch logged, once its callers are answered.
        apply: what applies a batch (by default :meth:`apply`); the store passes its own, which
            lets a test count the batches.
    """

    def __init__(self, path: Path, synchronous: str, committed: Committed, apply: Apply | None = None) -> None:
        self.path = path
        self.synchronous = synchronous
        self.conn: WriterConnection | None = None
        self.closing = False
        self._committed = committed
        self._apply = apply or self.apply
        self._pending: list[_Write] = []  # written during this turn of the event loop
        self._requests: queue.SimpleQueue[list[_Write] | _Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the thread and open the connection (creating the schema if needed)."""
        self._loop = asyncio.get_running_loop()
        self.closing = False
        self._thread = threading.Thread(target=self._serve, name="flowbus-writer", daemon=True)
        self._thread.start()
        self.conn = await self.job(self._connect)

    def _connect(self) -> WriterConnection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, factory=WriterConnection)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.executescript(SCHEMA)
        _migrate(conn)
        return conn

    async def stop(self) -> None:
        """Close the connection once every write queued before is committed, and end the thread."""
        self.closing = True
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await self.job(conn.close)  # after every write queued before it
        if self._thread is not None:
            thread, self._thread = self._thread, None
            await self.job(None)  # the stop mark: the thread answers it, then returns
            thread.join()  # the thread is past its last statement by now

    async def write(self, op: WriteOp) -> Any:
        """Queue ``op`` for the next batch; return its result once the batch is committed."""
        if self.closing or self.conn is None:
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

    async def job(self, fn: Callable[[], Any] | None) -> Any:
        """Run ``fn`` in the writer thread, between two batches, and return what it returns
        (None: stop the thread once every write queued before is committed)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flush()
        self._requests.put(_Job(fn, future))
        return await future

    def _serve(self) -> None:
        """The writer thread: take everything queued, commit its writes in batches of at most
        :data:`MAX_BATCH`, and go straight on, without waiting for the event loop.

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
        for start in range(0, len(writes), MAX_BATCH):
            self._commit(writes[start : start + MAX_BATCH])

    def _commit(self, writes: list[_Write]) -> None:
        """Apply and commit a batch (writer thread); its callers are answered on the event loop."""
        ops = [write.op for write in writes]
        logged: list[Logged] = []
        try:
            results = self._apply(ops)
            assert self.conn is not None
            logged, self.conn.logged = self.conn.logged, []
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

    def _answer(self, batch: list[_Write], results: list[Any], logged: list[Logged]) -> None:
        """Answer the callers of a committed batch, then tell of its changes (event loop): the
        callers resume before whoever waits for changes, so that a caller's answer leaves before
        the events of its write."""
        for write, result in zip(batch, results, strict=True):
            if write.future.done():
                continue
            if isinstance(result, BaseException):
                write.future.set_exception(result)
            else:
                write.future.set_result(result)
        self._committed(logged)

    def apply(self, ops: list[WriteOp]) -> list[Any]:
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
        conn = self.conn
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


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made before objects had versions up to date (writer thread)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(objects)")}
    if "version" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ALTER TABLE objects ADD COLUMN version INTEGER NOT NULL DEFAULT 1")
    conn.execute("UPDATE objects SET body = json_set(body, '$.version', 1)")
    conn.execute("COMMIT")


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


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
        if type(ops[start]) is InsertOp:
            while end < len(ops) and type(ops[end]) is InsertOp:
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
        return insert_many(conn, [op for op in ops if isinstance(op, InsertOp)])  # _runs() made them all so
    except Exception as exc:
        raise _Unexpected() from exc


def _run_isolated(conn: sqlite3.Connection, ops: list[WriteOp]) -> list[Any]:
    """Run ``ops`` in order, each in its own savepoint: one that fails is undone alone."""
    return [_isolated(conn, op) for op in ops]


def _isolated(conn: sqlite3.Connection, op: WriteOp) -> Any:
    mark = logged_mark(conn)
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        forget_logged(conn, mark)
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
