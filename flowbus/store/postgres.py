"""A PostgreSQL store on asyncpg: several processes may share one database.

Objects live in ``objects`` (a jsonb body, a tsvector for search), the change log in
``changes``, both in the schema given. Single writes of one turn of the event loop are made
in one transaction (a small group commit): consecutive inserts in one statement, each other
write in one statement whose outcome tells whether it was refused, so one refusal undoes
nothing of the others. Transactions run on a connection of their own.

PostgreSQL hands out sequence numbers before commit, so a reader of ``seq > last`` could
skip a transaction that commits late. Each writing transaction therefore takes a transaction
advisory lock right before it numbers its changes, as its last statements: seqs are given and
committed in one order. The same statement notifies a channel (``pg_notify``), on which every
store LISTENs, so that :meth:`PostgresStore.wait_changed` wakes for commits of any process.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg  # ships no type information: pyproject.toml lets mypy take it as Any
import orjson

from flowbus.errors import (
    Conflict,
    DoesNotExist,
    FlowBusError,
    Gone,
    InternalError,
    InvalidData,
    InvalidRequest,
    Unavailable,
)
from flowbus.params import Query, check_field_name
from flowbus.store.base import CREATED, DELETED, META, UPDATED, Change, Delete, Get, Insert, Patch, Prepare, Write
from flowbus.store.paging import after_sql, read_cursor
from flowbus.store.versions import Moved, check_version, compare_and_set

__all__ = ["PATCH_RETRIES", "PostgresStore"]

logger = logging.getLogger("flowbus.store")

PATCH_RETRIES = 8
"""Times a patch without ``expect`` is tried when other processes keep moving the object's version
(this process's patches of one object wait for each other instead)."""

_MAX_BATCH = 512
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")
_TERM = re.compile(r"\w+", re.UNICODE)
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # a pool or a connection closed under the call
)

_DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.objects (
    pos bigserial PRIMARY KEY,
    collection text NOT NULL,
    namespace text NOT NULL,
    id text NOT NULL,
    version bigint NOT NULL,
    body jsonb NOT NULL,
    search tsvector NOT NULL,
    UNIQUE (collection, namespace, id)
);
CREATE INDEX IF NOT EXISTS objects_search ON {s}.objects USING gin (search);
CREATE SEQUENCE IF NOT EXISTS {s}.change_seq;
CREATE TABLE IF NOT EXISTS {s}.changes (
    seq bigint PRIMARY KEY,
    kind text NOT NULL,
    collection text NOT NULL,
    namespace text NOT NULL,
    objectid text NOT NULL,
    version bigint NOT NULL,
    data jsonb NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_at ON {s}.changes (at);
CREATE TABLE IF NOT EXISTS {s}.trimmed (one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL);
INSERT INTO {s}.trimmed (seq) VALUES (0) ON CONFLICT DO NOTHING;
"""


class _Sql:
    """The statements of one schema, built once."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        self.ddl = _DDL.format(s=s)
        self.objects = f"{s}.objects"
        self.get = f"SELECT body FROM {s}.objects WHERE collection = $1 AND namespace = $2 AND id = $3"
        self.get_for_update = self.get + " FOR UPDATE"
        self.version = f"SELECT version FROM {s}.objects WHERE collection = $1 AND namespace = $2 AND id = $3"
        self.insert = (
            f"INSERT INTO {s}.objects (collection, namespace, id, version, body, search)"
            " VALUES ($1, $2, $3, 1, $4::jsonb, to_tsvector('simple', $5))"
        )
        self.insert_many = (
            f"INSERT INTO {s}.objects (collection, namespace, id, version, body, search)"
            " SELECT c, n, i, 1, b::jsonb, to_tsvector('simple', t)"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(c, n, i, b, t)"
            " ON CONFLICT (collection, namespace, id) DO NOTHING RETURNING collection, namespace, id"
        )
        self.update = (
            f"UPDATE {s}.objects SET version = $5, body = $6::jsonb, search = to_tsvector('simple', $7)"
            " WHERE collection = $1 AND namespace = $2 AND id = $3 AND version = $4"
        )
        self.delete = (
            f"DELETE FROM {s}.objects WHERE collection = $1 AND namespace = $2 AND id = $3"
            " AND ($4::bigint IS NULL OR version = $4) RETURNING body"
        )
        self.log = (
            f"WITH added AS (INSERT INTO {s}.changes (seq, kind, collection, namespace, objectid, version, data, at)"
            f" SELECT nextval('{s}.change_seq'), k, c, n, i, v, d::jsonb, clock_timestamp()"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])"
            " AS u(k, c, n, i, v, d) RETURNING seq)"
            " SELECT max(seq), pg_notify($7, max(seq)::text) FROM added"
        )
        self.changes = (
            f"SELECT seq, kind, collection, namespace, objectid, version, data, at FROM {s}.changes"
            " WHERE seq > $1 ORDER BY seq LIMIT $2"
        )
        # one look-up in the (collection, namespace, id) index per namespace, however many objects
        self.namespaces = (
            "WITH RECURSIVE ns(name) AS ("
            f" SELECT (SELECT min(namespace) FROM {s}.objects WHERE collection = $1)"
            " UNION ALL"
            f" SELECT (SELECT min(namespace) FROM {s}.objects WHERE collection = $1 AND namespace > ns.name)"
            " FROM ns WHERE ns.name IS NOT NULL"
            ") SELECT name FROM ns WHERE name IS NOT NULL"
        )
        self.first_seq = f"SELECT seq FROM {s}.trimmed"
        self.last_seq = f"SELECT greatest((SELECT max(seq) FROM {s}.changes), (SELECT seq FROM {s}.trimmed))"
        self.trim = (
            f"WITH gone AS (DELETE FROM {s}.changes WHERE seq <= (SELECT max(seq) FROM {s}.changes WHERE at < $1)"
            " RETURNING seq),"
            f" mark AS (UPDATE {s}.trimmed SET seq = greatest(seq, (SELECT max(seq) FROM gone)) RETURNING 1)"
            " SELECT count(*) FROM gone, (SELECT count(*) FROM mark) AS m"
        )


class _Logged:
    """What the change log records of one write."""

    __slots__ = ("collection", "data", "kind", "namespace", "objectid", "version")

    def __init__(self, kind: str, collection: str, namespace: str, objectid: str, version: int, data: str) -> None:
        self.kind = kind
        self.collection = collection
        self.namespace = namespace
        self.objectid = objectid
        self.version = version
        self.data = data


class _Op:
    """A single write, prepared on the event loop and queued for the next group commit."""

    __slots__ = ("collection", "data", "expect", "future", "kind", "namespace", "obj", "objectid", "text", "version")

    def __init__(
        self,
        kind: str,
        collection: str,
        namespace: str,
        objectid: str,
        *,
        obj: dict[str, Any] | None = None,
        text: str = "",
        version: int = 0,
        expect: int | None = None,
    ) -> None:
        self.kind = kind
        self.collection = collection
        self.namespace = namespace
        self.objectid = objectid
        self.obj = obj
        self.data = orjson.dumps(obj).decode() if obj is not None else ""
        self.text = text
        self.version = version  # a patch: the version it was merged on
        self.expect = expect
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class _Turn:
    """The patches of one object waiting for their turn in this process."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class PostgresStore:
    """A :class:`~flowbus.store.Store` in a PostgreSQL database.

    Args:
        dsn: a libpq connection URL, ``postgresql://user@host:port/database``.
        schema: the schema that holds the store's tables (created on :meth:`open`).
        pool_size: the most connections the store opens, besides the one that listens.
    """

    def __init__(self, dsn: str, *, schema: str = "public", pool_size: int = 10) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema must be letters, digits and '_' (at most 51), not {schema[:64]!r}")
        if pool_size < 2:
            raise ValueError("pool_size must be at least 2")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self._sql = _Sql(schema)
        self._channel = f"flowbus_{schema}"
        self._lock_key = zlib.crc32(f"flowbus:{schema}".encode())
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._pending: list[_Op] = []
        self._committing: set[asyncio.Task[None]] = set()
        self._max_commits = max(1, pool_size // 2)  # leave connections for reads
        self._seen = 0
        self._changed = asyncio.Event()
        self._relisten = asyncio.Lock()
        self._patching: dict[tuple[str, str, str], _Turn] = {}
        self._closing = False

    # -- life -----------------------------------------------------------------------------

    async def open(self) -> None:
        self._changed = asyncio.Event()
        try:
            self._listener = await asyncpg.connect(self.dsn)
            await self._listener.execute(self._sql.ddl)
            await self._listener.add_listener(self._channel, self._notified)
            self._listener.add_termination_listener(self._lost)
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size)
            self._seen = await self.last_seq()
        except Exception as exc:
            await self.close()
            if isinstance(exc, _UNAVAILABLE):
                raise Unavailable(f"PostgreSQL does not answer: {type(exc).__name__}") from exc
            if isinstance(exc, asyncpg.PostgresError):  # a bad password, no such database...
                raise Unavailable(f"PostgreSQL refused: {exc}") from exc
            raise

    async def close(self) -> None:
        self._closing = True
        while self._pending or self._committing:
            self._flush()
            if self._committing:
                await asyncio.gather(*self._committing, return_exceptions=True)
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                await listener.close(timeout=5)
            except Exception:
                listener.terminate()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except Exception:
                pool.terminate()
        self._changed.set()

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        """A change was committed (by any process): wake the waiters."""
        try:
            self._advance(int(payload))
        except ValueError:
            self._advance(self._seen + 1)

    def _advance(self, seq: int) -> None:
        if seq > self._seen:
            self._seen = seq
        self._changed.set()
        self._changed = asyncio.Event()

    # -- single writes: a group commit ----------------------------------------------------

    async def insert(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> dict[str, Any]:
        stored, text = _new(obj, prepare)
        op = _Op(CREATED, collection, namespace, stored["id"], obj=stored, text=text)
        result: dict[str, Any] = await self._queue(op)
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
        key = (collection, namespace, objectid)
        turn = self._patching.setdefault(key, _Turn())
        turn.users += 1
        try:
            async with turn.lock:  # this process's patches of one object go one after the other
                return await self._patch(collection, namespace, objectid, changes, prepare, expect, base)
        finally:
            turn.users -= 1
            if not turn.users:
                del self._patching[key]

    async def _patch(
        self,
        collection: str,
        namespace: str,
        objectid: str,
        changes: dict[str, Any],
        prepare: Prepare,
        expect: int | None,
        base: dict[str, Any] | None,
    ) -> dict[str, Any]:
        async def read() -> dict[str, Any] | None:
            return await self.get(collection, namespace, objectid)

        async def write(current: dict[str, Any]) -> dict[str, Any]:
            merged, text = _merged(current, changes, prepare)
            op = _Op(UPDATED, collection, namespace, objectid, obj=merged, text=text, version=current["version"])
            stored: dict[str, Any] = await self._queue(op)  # Moved when the version moved meanwhile
            return stored

        return await compare_and_set(read, write, objectid, expect=expect, base=base, tries=PATCH_RETRIES)

    async def delete(
        self, collection: str, namespace: str, objectid: str, *, expect: int | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._queue(_Op(DELETED, collection, namespace, objectid, expect=expect))
        return result

    async def _queue(self, op: _Op) -> Any:
        if self._closing or self._pool is None:
            raise Unavailable("The store is closed")
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(op)
        return await op.future

    def _flush(self) -> None:
        """Commit what was queued, in batches, with a bounded number of commits at once (the
        rest waits for the next one to end, and so joins a larger batch)."""
        while self._pending and len(self._committing) < self._max_commits:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            task = asyncio.create_task(self._commit(batch))
            self._committing.add(task)
            task.add_done_callback(self._committed)

    def _committed(self, task: asyncio.Task[None]) -> None:
        self._committing.discard(task)
        self._flush()

    async def _commit(self, batch: list[_Op]) -> None:
        """Make a batch in one transaction and answer its callers once it is committed."""
        try:
            results, seq = await self._run_batch(batch)
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, _UNAVAILABLE):  # find the write that failed
                for op in batch:
                    await self._commit([op])
                return
            error = _failure(exc)
            for op in batch:
                _settle(op.future, error)
            return
        if seq is not None:
            self._advance(seq)
        for op, result in zip(batch, results, strict=True):
            _settle(op.future, result)

    async def _run_batch(self, batch: list[_Op]) -> tuple[list[Any], int | None]:
        assert self._pool is not None
        results: list[Any] = []
        logged: list[_Logged] = []
        async with self._pool.acquire() as conn, conn.transaction():
            start = 0
            while start < len(batch):
                end = start + 1
                if batch[start].kind == CREATED:
                    while end < len(batch) and batch[end].kind == CREATED:
                        end += 1
                    results += await self._insert_many(conn, batch[start:end], logged)
                else:
                    results.append(await self._one(conn, batch[start], logged))
                start = end
            seq = await self._log(conn, logged)
        return results, seq

    async def _insert_many(self, conn: asyncpg.Connection, ops: list[_Op], logged: list[_Logged]) -> list[Any]:
        rows = await conn.fetch(
            self._sql.insert_many,
            [op.collection for op in ops],
            [op.namespace for op in ops],
            [op.objectid for op in ops],
            [op.data for op in ops],
            [op.text for op in ops],
        )
        made = {(row[0], row[1], row[2]) for row in rows}
        results: list[Any] = []
        for op in ops:
            key = (op.collection, op.namespace, op.objectid)
            if key in made:
                made.discard(key)  # an id twice in one batch: the first is made, the second refused
                results.append(op.obj)
                logged.append(_Logged(CREATED, *key, 1, op.data))
            else:
                results.append(Conflict(f"An object with id {op.objectid!r} already exists"))
        return results

    async def _one(self, conn: asyncpg.Connection, op: _Op, logged: list[_Logged]) -> Any:
        """A patch or a delete; its refusal is its result (it wrote nothing)."""
        key = (op.collection, op.namespace, op.objectid)
        if op.kind == UPDATED:
            assert op.obj is not None
            status = await conn.execute(self._sql.update, *key, op.version, op.version + 1, op.data, op.text)
            if status.endswith(" 0"):  # another version (or none): the patch is read and merged again
                return Moved()
            logged.append(_Logged(UPDATED, *key, op.version + 1, op.data))
            return op.obj
        try:
            return await self._delete(conn, op.collection, op.namespace, op.objectid, op.expect, logged)
        except FlowBusError as exc:
            return exc

    async def _delete(
        self,
        conn: asyncpg.Connection,
        collection: str,
        namespace: str,
        objectid: str,
        expect: int | None,
        logged: list[_Logged],
    ) -> dict[str, Any]:
        body = await conn.fetchval(self._sql.delete, collection, namespace, objectid, expect)
        if body is None:
            if await conn.fetchval(self._sql.version, collection, namespace, objectid) is None:
                raise DoesNotExist(f"Object {objectid!r} does not exist")
            raise Conflict(f"Object {objectid!r} has changed: its version is no longer {expect}")
        gone: dict[str, Any] = orjson.loads(body)
        logged.append(_Logged(DELETED, collection, namespace, objectid, gone["version"], body))
        return gone

    async def _log(self, conn: asyncpg.Connection, logged: list[_Logged]) -> int | None:
        """Number the transaction's changes and notify the listeners: the last statements of
        the transaction, under a lock held until it commits, so seqs commit in their order."""
        if not logged:
            return None
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)
        row = await conn.fetchrow(
            self._sql.log,
            [one.kind for one in logged],
            [one.collection for one in logged],
            [one.namespace for one in logged],
            [one.objectid for one in logged],
            [one.version for one in logged],
            [one.data for one in logged],
            self._channel,
        )
        assert row is not None
        seq: int = row[0]
        return seq

    # -- transactions ---------------------------------------------------------------------

    async def transaction(self, writes: Sequence[Write]) -> list[dict[str, Any] | None]:
        if not writes:
            return []
        if self._closing or self._pool is None:
            raise Unavailable("The store is closed")
        # inserts are validated before the transaction begins; a patch can only be merged
        # (and so validated) on what the transaction reads
        staged = {i: _new(w.obj, w.prepare) for i, w in enumerate(writes) if isinstance(w, Insert)}
        try:
            results, seq = await self._run_transaction(writes, staged)
        except Exception as exc:
            raise _failure(exc) from exc
        if seq is not None:
            self._advance(seq)
        return results

    async def _run_transaction(
        self, writes: Sequence[Write], staged: dict[int, tuple[dict[str, Any], str]]
    ) -> tuple[list[dict[str, Any] | None], int | None]:
        assert self._pool is not None
        results: list[dict[str, Any] | None] = []
        logged: list[_Logged] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for i, write in enumerate(writes):
                if isinstance(write, Insert):
                    results.append(await self._tx_insert(conn, write, *staged[i], logged))
                elif isinstance(write, Patch):
                    results.append(await self._tx_patch(conn, write, logged))
                elif isinstance(write, Delete):
                    key = (write.collection, write.namespace, write.objectid)
                    results.append(await self._delete(conn, *key, write.expect, logged))
                elif isinstance(write, Get):
                    results.append(await self._tx_get(conn, write))
                else:
                    raise TypeError(f"not a store write: {write!r}")
            seq = await self._log(conn, logged)
        return results, seq

    async def _tx_insert(
        self, conn: asyncpg.Connection, write: Insert, stored: dict[str, Any], text: str, logged: list[_Logged]
    ) -> dict[str, Any]:
        data = orjson.dumps(stored).decode()
        try:
            await conn.execute(self._sql.insert, write.collection, write.namespace, stored["id"], data, text)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"An object with id {stored['id']!r} already exists") from None
        logged.append(_Logged(CREATED, write.collection, write.namespace, stored["id"], 1, data))
        return stored

    async def _tx_patch(self, conn: asyncpg.Connection, write: Patch, logged: list[_Logged]) -> dict[str, Any]:
        key = (write.collection, write.namespace, write.objectid)
        body = await conn.fetchval(self._sql.get_for_update, *key)
        if body is None:
            raise DoesNotExist(f"Object {write.objectid!r} does not exist")
        current: dict[str, Any] = orjson.loads(body)
        check_version(current, write.expect)
        merged, text = _merged(current, write.changes, write.prepare)
        data = orjson.dumps(merged).decode()
        await conn.execute(self._sql.update, *key, current["version"], merged["version"], data, text)
        logged.append(_Logged(UPDATED, *key, merged["version"], data))
        return merged

    async def _tx_get(self, conn: asyncpg.Connection, read: Get) -> dict[str, Any] | None:
        body = await conn.fetchval(self._sql.get, read.collection, read.namespace, read.objectid)
        found: dict[str, Any] | None = None if body is None else orjson.loads(body)
        if read.expect is not None:
            if found is None:
                raise Conflict(f"Object {read.objectid!r} does not exist any more")
            check_version(found, read.expect)
        return found

    # -- reads ----------------------------------------------------------------------------

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        body = await self._fetchval(self._sql.get, collection, namespace, objectid)
        found: dict[str, Any] | None = None if body is None else orjson.loads(body)
        return found

    def peek(self, collection: str, namespace: str, objectid: str) -> bytes | None:
        """Never an object: there is no cache here, since other processes may write the
        database at any time (see :class:`~flowbus.store.base.Peekable`)."""
        return None

    async def query(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        where, args = _where(query.filters, first=3)
        direction = "DESC" if query.descending else "ASC"
        key = None if query.sort is None else _field_sql(query.sort)
        source = f"{self._sql.objects} o WHERE o.collection = $1 AND o.namespace = $2{where}"
        cursor = read_cursor(query)
        if cursor is None:
            order = f"o.pos {direction}" if key is None else f"{key} {direction}, o.pos {direction}"
            return await self._page(source, (collection, namespace, *args), order, query)
        # by cursor: in the order of the sort key, then the id; PostgreSQL puts NULL (a missing
        # field, not JSON null) last in ascending order and first in descending order
        order = f"o.id {direction}" if key is None else f"{key} {direction}, o.id {direction}"
        if cursor.objectid is None:  # the first page
            return await self._page(source, (collection, namespace, *args), order, query)
        n = 3 + len(args)
        value = None if cursor.value is None else f"${n}::jsonb"
        objectid = f"${n + (value is not None)}"
        after = after_sql(key, "o.id", value, objectid, descending=query.descending, nulls_first=query.descending)
        after_args = (cursor.objectid,) if value is None else (cursor.value, cursor.objectid)
        return await self._page_after(source, (collection, namespace, *args), after, after_args, order, query)

    async def search(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        terms = _TERM.findall(query.q or "")
        if not terms:
            return await self.query(collection, namespace, query)
        if query.after is not None:
            raise InvalidRequest("A search is ranked: it pages by offset, not by cursor")
        where, args = _where(query.filters, first=4)
        # each term is \w+ (no quote, no backslash, no operator): quoted, it is one prefix lexeme
        tsquery = " & ".join(f"'{term}':*" for term in terms[:32])
        source = (
            f"{self._sql.objects} o, to_tsquery('simple', $3) AS q"
            f" WHERE o.collection = $1 AND o.namespace = $2 AND o.search @@ q{where}"
        )
        return await self._page(
            source, (collection, namespace, tsquery, *args), "ts_rank(o.search, q) DESC, o.pos", query
        )

    async def namespaces(self, collection: str) -> list[str]:
        rows = await self._fetch(self._sql.namespaces, collection)
        return sorted(row[0] for row in rows)

    async def _page(
        self, source: str, args: tuple[Any, ...], order: str, query: Query
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of ``source`` and the count of all its rows, read by one statement (one
        snapshot); cut short after the object whose JSON passes ``query.max_bytes``."""
        n = len(args)
        rows = await self._fetch(
            f"SELECT o.body, count(*) OVER () FROM {source} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
            *args,
            query.limit,
            query.offset,
        )
        if rows:
            total: int = rows[0][1]
        elif query.offset:  # past the end: no row carries the count
            total = await self._fetchval(f"SELECT count(*) FROM {source}", *args)
        else:
            total = 0
        return _cut(rows, query.max_bytes), total

    async def _page_after(
        self,
        source: str,
        args: tuple[Any, ...],
        after: str,
        after_args: tuple[Any, ...],
        order: str,
        query: Query,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the rows of ``source`` that meet ``after`` too (a cursor), and the count of
        all the rows of ``source``, read by one statement (one snapshot)."""
        n = len(args) + len(after_args)
        rows = await self._fetch(
            f"SELECT o.body, (SELECT count(*) FROM {source}) FROM {source} AND {after}"
            f" ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
            *args,
            *after_args,
            query.limit,
            query.offset,
        )
        total: int = rows[0][1] if rows else await self._fetchval(f"SELECT count(*) FROM {source}", *args)
        return _cut(rows, query.max_bytes), total

    # -- the change log -------------------------------------------------------------------

    async def changes(self, since: int, limit: int = 1000) -> list[Change]:
        pool = self._ready()
        try:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                first: int = await conn.fetchval(self._sql.first_seq)
                if since < first:
                    raise Gone(f"Changes after {since} are no longer kept (the log starts after {first})")
                rows = await conn.fetch(self._sql.changes, since, limit)
        except Exception as exc:
            raise _failure(exc) from exc
        return [
            Change(row[0], row[1], row[2], row[3], row[4], row[5], None, _stamp(row[7]), body=row[6]) for row in rows
        ]

    async def last_seq(self) -> int:
        seq: int = await self._fetchval(self._sql.last_seq)
        return seq

    async def first_seq(self) -> int:
        seq: int = await self._fetchval(self._sql.first_seq)
        return seq

    async def trim_changes(self, before: str) -> int:
        try:
            moment = datetime.fromisoformat(before)
        except ValueError:
            raise InvalidRequest(f"Not an RFC 3339 time: {before[:64]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        count: int = await self._fetchval(self._sql.trim, moment)
        return count

    async def wait_changed(self, since: int, timeout: float) -> None:
        """Wakes for a notification (a commit of any process), and when the listening connection
        is lost (see :meth:`_lost`): then it listens again and catches up before waiting on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._seen <= since and not self._closing:
            if self._listener is None or self._listener.is_closed():
                # the listening connection was lost: notifications sent meanwhile are lost with it
                if not await self._listen_again():
                    # nothing tells when the server answers again: the caller looks, and comes back
                    await asyncio.sleep(max(0.0, min(deadline - loop.time(), 1.0)))
                    return
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):  # not wait_for(): on 3.11 it can swallow a cancellation
                    await changed.wait()
            except TimeoutError:
                return

    def _lost(self, connection: Any) -> None:
        """The listening connection was closed (by the server, the network...): wake the waiters,
        so that one of them listens again at once."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _listen_again(self) -> bool:
        """Open a new listening connection and catch up with what was committed without it;
        False when the server does not answer."""
        async with self._relisten:
            if self._listener is not None and not self._listener.is_closed():
                return True
            try:
                listener = await asyncpg.connect(self.dsn)
                await listener.add_listener(self._channel, self._notified)
                listener.add_termination_listener(self._lost)
            except Exception:
                logger.warning("cannot listen for changes again: PostgreSQL does not answer")
                return False
            self._listener = listener
            try:
                self._advance(await self.last_seq())
            except FlowBusError:
                pass
            return True

    # -- helpers --------------------------------------------------------------------------

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("The store is closed")
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            return list(await self._ready().fetch(sql, *args))
        except Exception as exc:
            raise _failure(exc) from exc

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        try:
            return await self._ready().fetchval(sql, *args)
        except Exception as exc:
            raise _failure(exc) from exc


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _cut(rows: list[Any], max_bytes: int) -> list[dict[str, Any]]:
    """The objects of a page's rows, up to the one whose JSON passes ``max_bytes``."""
    page: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        obj = orjson.loads(row[0])
        page.append(obj)
        size += len(orjson.dumps(obj))
        if size > max_bytes:
            break
    return page


def _failure(exc: BaseException) -> FlowBusError:
    """The FlowBusError a failed statement answers (the cause is chained by the caller)."""
    if isinstance(exc, FlowBusError):
        return exc
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict("An object with that id already exists")
    if isinstance(exc, _UNAVAILABLE):
        return Unavailable("The database does not answer")
    if isinstance(exc, asyncpg.DataError):  # e.g. a NUL character, which PostgreSQL text cannot hold
        return InvalidData("The object cannot be stored (PostgreSQL text holds no NUL character)")
    return InternalError()


_now_cache: tuple[int, str] = (0, "")


def _now() -> str:
    """The current UTC time as stored (RFC 3339, whole seconds), formatted once per second."""
    global _now_cache
    second = int(time.time())
    if second != _now_cache[0]:
        _now_cache = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _now_cache[1]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new(obj: dict[str, Any], prepare: Prepare) -> tuple[dict[str, Any], str]:
    """A new object as stored (version 1) and its search text; ``prepare`` may refuse it."""
    now = _now()
    stored = {k: v for k, v in obj.items() if k not in META}
    stored.update(id=obj["id"], created=now, updated=now, version=1)
    return stored, _text(prepare(stored))


def _merged(current: dict[str, Any], changes: dict[str, Any], prepare: Prepare) -> tuple[dict[str, Any], str]:
    """``current`` with ``changes`` merged, one version later, and its search text."""
    merged = {**current, **{k: v for k, v in changes.items() if k not in META}}
    merged.update(updated=_now(), version=current["version"] + 1)
    return merged, _text(prepare(merged))


def _text(text: str) -> str:
    return text.replace("\x00", " ")  # PostgreSQL text holds no NUL; it separates words anyway


def _field_sql(name: str) -> str:
    # The name goes into the SQL text: checked here, whoever built the Query (letters, digits, '_').
    return f"o.body -> '{check_field_name(name)}'"


def _where(filters: dict[str, Any], *, first: int) -> tuple[str, list[Any]]:
    """Filter clauses (each starting with AND) and their arguments, numbered from ``first``."""
    clauses: list[str] = []
    args: list[Any] = []
    for name, value in filters.items():
        field = _field_sql(name)
        if value is None:
            clauses.append(f" AND ({field} IS NULL OR {field} = 'null'::jsonb)")
            continue
        clauses.append(f" AND {field} = ANY(${first + len(args)}::text[]::jsonb[])")
        args.append(_filter_values(value))
    return "".join(clauses), args


def _filter_values(value: Any) -> list[str]:
    """The JSON values a filter value matches: a query-string '22' also matches the number 22,
    'true' also matches true (jsonb compares numbers by value: 22 matches 22.0)."""
    if type(value) is int:
        return [str(value)]  # also past 64 bits, which orjson does not write; jsonb numbers have no bound
    values = [orjson.dumps(value).decode()]
    if not isinstance(value, str):
        return values
    if value in ("true", "false"):
        values.append(value)
        return values
    try:
        number = float(value)
    except ValueError:
        return values
    if number == number and abs(number) != float("inf"):  # not NaN nor infinite
        values.append(orjson.dumps(number).decode())
    return values
