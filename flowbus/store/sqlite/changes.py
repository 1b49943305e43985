"""The SQLite store's change log: how a write records its change, what this process keeps of
the changes it committed, and trimming.

Every write records its change in the ``changes`` table in its own transaction; ``seq`` is the
table's AUTOINCREMENT key, so it grows in commit order (one writer per database file at a time:
SQLite's write lock). The writer's connection also notes what its transaction logged, so that
once committed the changes are known without reading them back (:class:`Recent`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from flowbus.errors import InvalidRequest
from flowbus.store.base import Change

__all__ = [
    "FIRST_SEQ",
    "LAST_SEQ",
    "POLL",
    "READ_CHANGES",
    "Logged",
    "Recent",
    "Watcher",
    "WriterConnection",
    "forget_logged",
    "log_change",
    "logged_mark",
    "rfc3339",
    "trim",
]

logger = logging.getLogger("flowbus.store")

POLL = 0.05
"""Seconds between two looks at the change log for other processes' commits, while a
:meth:`~flowbus.store.sqlite.SQLiteStore.wait_changed` waits."""

READ_CHANGES = (
    "SELECT seq, kind, collection, namespace, id, version, body, at FROM changes WHERE seq > ? ORDER BY seq LIMIT ?"
)
LAST_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"
FIRST_SEQ = "SELECT coalesce((SELECT value FROM store_meta WHERE key = 'trimmed'), 0)"
_LOG = "INSERT INTO changes (at, kind, collection, namespace, id, version, body) VALUES (?, ?, ?, ?, ?, ?, ?)"

Logged = tuple[int, str, str, str, str, int, str, str]
"""A change as logged: seq, kind, collection, namespace, objectid, version, body, at."""


class WriterConnection(sqlite3.Connection):
    """The writer thread's connection: it also notes the changes its transaction logged, so that
    once committed they are known without reading them back (see :class:`Recent`)."""

    logged: list[Logged]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logged = []


def logged_mark(conn: sqlite3.Connection) -> int:
    """Where the changes noted so far end (for :func:`forget_logged` after a savepoint)."""
    return len(conn.logged) if isinstance(conn, WriterConnection) else 0


def forget_logged(conn: sqlite3.Connection, mark: int) -> None:
    """A savepoint was rolled back: what it logged was not written."""
    if isinstance(conn, WriterConnection):
        del conn.logged[mark:]


def log_change(
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
    if isinstance(conn, WriterConnection) and seq is not None:
        conn.logged.append((seq, kind, collection, namespace, objectid, version, body, at))


def rfc3339(moment: str) -> str:
    """``moment`` in the store's own form (UTC, whole seconds), for comparing with ``at``."""
    try:
        parsed = datetime.fromisoformat(moment)
    except (TypeError, ValueError):
        raise InvalidRequest(f"Not an RFC 3339 time: {str(moment)[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trim(conn: sqlite3.Connection, cutoff: str) -> int:
    """Delete the changes committed before ``cutoff`` (the store's form of a time) and remember
    the newest seq deleted (writer thread, outside any batch); returns how many went."""
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


class Recent:
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
        self._changes: dict[int, Logged] = {}
        self._order: collections.deque[int] = collections.deque()
        self._bytes = 0
        self.newest = 0  # the latest seq this process committed (kept when the change is not)

    def __contains__(self, seq: int) -> bool:
        return seq in self._changes

    def add(self, logged: list[Logged]) -> None:
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


class Watcher:
    """Tells whoever waits for changes when the log may hold new ones (event loop only).

    This process's commits are told at once (:meth:`advance`). SQLite has no way to tell one
    process that another committed, so one task, :meth:`_look`, reads the log's last ``seq``
    every :data:`POLL` seconds, and only while somebody waits: however many wait, the store
    makes one such read per period, and none while nobody waits.

    Args:
        last_seq: reads the ``seq`` of the latest change in the log.
    """

    def __init__(self, last_seq: Callable[[], Awaitable[int]]) -> None:
        self._last_seq = last_seq
        self.seen = 0  # the latest seq known to be committed, by this process or another
        self._changed = asyncio.Event()  # set (and replaced) whenever seen moves
        self._waiting = 0
        self._looking: asyncio.Task[None] | None = None
        self._closed = False

    def open(self, seen: int) -> None:
        self.seen = seen
        self._closed = False

    def advance(self, seq: int) -> None:
        """Changes up to ``seq`` are committed: wake the waiters if that is news."""
        if seq > self.seen:
            self.seen = seq
            self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, since: int, timeout: float) -> None:
        """Return once a change after ``since`` is known committed, or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiting += 1
        try:
            if not self._closed and (self._looking is None or self._looking.done()):
                self._looking = asyncio.create_task(self._look(), name="flowbus-change-watcher")
            while self.seen <= since and not self._closed:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                changed = self._changed
                try:  # not wait_for(): on 3.11 it can swallow a cancellation that races the wake-up
                    async with asyncio.timeout(remaining):
                        await changed.wait()
                except TimeoutError:
                    return
        finally:
            self._waiting -= 1

    async def _look(self) -> None:
        """Read the log's last seq every :data:`POLL` s while somebody waits (the one loop that
        polls: other processes' commits give no sign of their own)."""
        while self._waiting and not self._closed:
            await asyncio.sleep(POLL)
            try:
                self.advance(await self._last_seq())
            except Exception:  # the waiters learn nothing new; the next look tries again
                logger.debug("could not read the change log's last seq", exc_info=True)

    async def close(self) -> None:
        """Wake every waiter (they return) and stop looking."""
        self._closed = True
        self._wake()
        if self._looking is not None:
            looking, self._looking = self._looking, None
            looking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await looking
