"""The SQLite store's reads: objects by id, pages of a collection (filters, sort, paging, total),
full-text search and the namespaces of a collection.

Reads go through ``aiosqlite`` on a connection of their own and never wait for the writer (WAL
lets readers and the writer run side by side). Filters and sorting on fields use SQLite's JSON
functions on the stored object; full-text search uses FTS5 (unicode61, BM25 ranking), every
word of ``q`` matched as a prefix.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from flowbus.errors import InvalidRequest, Unavailable
from flowbus.params import Query, check_field_name
from flowbus.store.paging import after_sql, read_cursor

__all__ = ["Reader"]

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
_FETCH = 16  # rows of a page read at a time
_TERM = re.compile(r"\w+", re.UNICODE)


class Reader:
    """The read connection of one database file."""

    def __init__(self) -> None:
        self.conn: aiosqlite.Connection | None = None
        # While a page's statement is open, the connection stays in its read transaction: any
        # other read on it would see that snapshot, not the writes committed since.
        self._paging = asyncio.Lock()

    async def open(self, path: Path) -> None:
        self.conn = await aiosqlite.connect(path)
        await self.conn.execute("PRAGMA query_only = ON")

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.close()

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        rows = await self.read(
            "SELECT body FROM objects WHERE collection = ? AND namespace = ? AND id = ?",
            (collection, namespace, objectid),
        )
        if not rows:
            return None
        found: dict[str, Any] = orjson.loads(rows[0][0])
        return found

    async def query(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        where, args = _where(collection, namespace, query.filters)
        cursor = read_cursor(query)
        if cursor is None:
            return await self._page(f"objects o WHERE {where}", args, f"ORDER BY {_order(query)}", query)
        # by cursor: in the order of the sort key, then the id (which the (collection, namespace,
        # id) index gives at once when there is no sort key)
        direction = "DESC" if query.descending else "ASC"
        key = None if query.sort is None else _field_sql(query.sort)
        order = f"ORDER BY o.id {direction}" if key is None else f"ORDER BY {key} {direction}, o.id {direction}"
        if cursor.objectid is None:  # the first page
            return await self._page(f"objects o WHERE {where}", args, order, query)
        # SQLite reads JSON null as NULL; json_extract() makes the cursor's value what the key is
        null = cursor.value is None or cursor.value == "null"
        value = None if null else "json_extract(?, '$')"
        after = after_sql(key, "o.id", value, "?", descending=query.descending, nulls_first=not query.descending)
        after_args = (cursor.objectid,) if null else (cursor.value, cursor.objectid)
        return await self._page(f"objects o WHERE {where}", args, order, query, (after, after_args))

    async def search(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        match = _match_expression(query.q or "")
        if match is None:
            return await self.query(collection, namespace, query)
        if query.after is not None:
            raise InvalidRequest("A search is ranked: it pages by offset, not by cursor")
        where, args = _where(collection, namespace, query.filters)
        joined = f"objects_fts f JOIN objects o ON o.seq = f.rowid WHERE objects_fts MATCH ? AND {where}"
        return await self._page(joined, (match, *args), "ORDER BY f.rank, o.seq", query)

    async def namespaces(self, collection: str) -> list[str]:
        rows = await self.read(_NAMESPACES, (collection,))
        return sorted(row[0] for row in rows)

    async def _page(
        self,
        source: str,
        args: tuple[Any, ...],
        order: str,
        query: Query,
        after: tuple[str, tuple[Any, ...]] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of ``SELECT ... FROM {source}`` and the count of all its rows, read by one
        statement (one snapshot: the total always agrees with the page, whatever commits).
        ``source`` ends with its WHERE clause; ``after`` is a condition and its arguments that the
        page's rows must meet too (not those counted: a cursor).

        Rows are read a few at a time, and the page ends after the object whose JSON passes
        ``query.max_bytes``: a page of huge objects never sits in memory whole."""
        if self.conn is None:
            raise Unavailable("The store is closed")
        rows_of, rows_args = (source, args) if after is None else (f"{source} AND {after[0]}", (*args, *after[1]))
        sql = f"SELECT o.body, (SELECT count(*) FROM {source}) FROM {rows_of} {order} LIMIT ? OFFSET ?"
        items: list[dict[str, Any]] = []
        total: int | None = None
        size = 0
        statement_args = (*args, *rows_args, query.limit, query.offset)
        async with self._paging, self.conn.execute(sql, statement_args) as cursor:
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
            past = query.offset or after is not None
            total = (await self.read(f"SELECT count(*) FROM {source}", args))[0][0] if past else 0
        return items, total

    async def read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """All the rows of one statement."""
        if self.conn is None:
            raise Unavailable("The store is closed")
        async with self._paging:
            return list(await self.conn.execute_fetchall(sql, args))


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
