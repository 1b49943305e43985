"""The embedded store itself: the writer, the reader and the change log of one SQLite file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowbus.errors import DoesNotExist, Gone
from flowbus.params import Query
from flowbus.store.base import Change, Delete, Get, Insert, Patch, Prepare, Write
from flowbus.store.sqlite.changes import (
    FIRST_SEQ,
    LAST_SEQ,
    READ_CHANGES,
    Logged,
    Recent,
    Watcher,
    rfc3339,
    trim,
)
from flowbus.store.sqlite.objects import (
    DeleteOp,
    GetOp,
    InsertOp,
    PatchOp,
    TransactionOp,
    WriteOp,
)
from flowbus.store.sqlite.search import Reader
from flowbus.store.sqlite.writer import Writer
from flowbus.store.versions import check_version, compare_and_set, retry_moved

__all__ = ["SQLiteStore"]

_TRIES = 20
"""Times a write is read, merged and validated again when other writers keep moving its object
(the patches of one object made at once by this process all move each other but one)."""


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
        # the writer applies each batch with self._apply, looked up at every batch
        self._writes = Writer(self.path, self.synchronous, self._committed_changes, lambda ops: self._apply(ops))
        self._reads = Reader()
        self._recent = Recent()
        self._watcher = Watcher(self.last_seq)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._writes.start()
            await self._reads.open(self.path)
            self._watcher.open(await self.last_seq())
        except BaseException:
            await self.close()  # the reader's thread would keep the process alive
            raise

    async def close(self) -> None:
        self._writes.closing = True
        await self._watcher.close()  # whoever waits for changes goes
        await self._reads.close()
        await self._writes.stop()

    async def _write(self, op: WriteOp) -> Any:
        """Queue ``op`` for the writer's next batch; its result once the batch is committed."""
        return await self._writes.write(op)

    def _apply(self, ops: list[WriteOp]) -> list[Any]:
        """Apply and commit one batch (writer thread)."""
        return self._writes.apply(ops)

    def _committed_changes(self, logged: list[Logged]) -> None:
        """A batch was committed (event loop): keep its changes, and wake whoever waits."""
        self._recent.add(logged)
        self._watcher.advance(self._recent.newest)

    # -- writes ---------------------------------------------------------------------------

    async def insert(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> dict[str, Any]:
        result: dict[str, Any] = await self._write(InsertOp(collection, namespace, obj, prepare))
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

        async def read() -> dict[str, Any] | None:
            return await self.get(collection, namespace, objectid)

        async def write(current: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = await self._write(
                PatchOp(collection, namespace, current, changes, prepare, expect is not None)
            )
            return result

        return await compare_and_set(read, write, objectid, expect=expect, base=base, tries=_TRIES)

    async def delete(
        self, collection: str, namespace: str, objectid: str, *, expect: int | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._write(DeleteOp(collection, namespace, objectid, expect))
        return result

    async def transaction(self, writes: Sequence[Write]) -> list[dict[str, Any] | None]:
        if not writes:
            return []

        async def attempt() -> list[dict[str, Any] | None]:
            results: list[dict[str, Any] | None] = await self._write(TransactionOp(await self._prepare_all(writes)))
            return results

        return await retry_moved(
            attempt,
            tries=_TRIES,
            gave_up="The objects of the transaction kept changing while it was being written; try again",
        )

    async def _prepare_all(self, writes: Sequence[Write]) -> list[WriteOp]:
        """The ops of a transaction, validated on the event loop; each sees the writes before it."""
        seen: dict[tuple[str, str, str], dict[str, Any] | None] = {}

        async def current(key: tuple[str, str, str]) -> dict[str, Any] | None:
            return seen[key] if key in seen else await self.get(*key)

        ops: list[WriteOp] = []
        for write in writes:
            if isinstance(write, Insert):
                insert = InsertOp(write.collection, write.namespace, write.obj, write.prepare)
                seen[(write.collection, write.namespace, write.obj["id"])] = insert.stored
                ops.append(insert)
                continue
            key = (write.collection, write.namespace, write.objectid)
            if isinstance(write, Get):
                ops.append(GetOp(*key, write.expect))
                continue
            found = await current(key)
            if found is None:
                raise DoesNotExist(f"Object {write.objectid!r} does not exist")
            check_version(found, write.expect)
            if isinstance(write, Patch):
                patch = PatchOp(
                    write.collection, write.namespace, found, write.changes, write.prepare, write.expect is not None
                )
                seen[key] = patch.merged
                ops.append(patch)
            elif isinstance(write, Delete):
                seen[key] = None
                ops.append(DeleteOp(*key, found.get("version", 1)))
            else:
                raise TypeError(f"not a store write: {write!r}")
        return ops

    # -- the change log -------------------------------------------------------------------

    async def changes(self, since: int, limit: int = 1000) -> list[Change]:
        if since + 1 in self._recent:  # what this process committed lately: not read back
            held = self._recent.after(since, limit)
            if held is not None:
                return held
        rows = await self._reads.read(READ_CHANGES, (since, limit))
        first = await self.first_seq()  # read after the rows: a trim in between is seen
        if since < first:
            raise Gone(f"Changes after {since} are no longer kept (the log starts after {first})")
        return [Change(r[0], r[1], r[2], r[3], r[4], r[5], None, r[7], body=r[6]) for r in rows]

    async def last_seq(self) -> int:
        seq: int = (await self._reads.read(LAST_SEQ, ()))[0][0]
        return seq

    async def first_seq(self) -> int:
        seq: int = (await self._reads.read(FIRST_SEQ, ()))[0][0]
        return seq

    async def trim_changes(self, before: str) -> int:
        cutoff = rfc3339(before)

        def trim_now() -> int:
            conn = self._writes.conn
            assert conn is not None
            return trim(conn, cutoff)

        trimmed: int = await self._writes.job(trim_now)
        self._recent.forget_through(await self.first_seq())
        return trimmed

    async def wait_changed(self, since: int, timeout: float) -> None:
        """This process's commits wake at once; other processes' are seen by the store's one
        look at the log every :data:`POLL` s, made while anybody waits (:class:`Watcher`)."""
        await self._watcher.wait(since, timeout)

    # -- reads ----------------------------------------------------------------------------

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        return await self._reads.get(collection, namespace, objectid)

    async def query(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        return await self._reads.query(collection, namespace, query)

    async def search(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        return await self._reads.search(collection, namespace, query)

    async def namespaces(self, collection: str) -> list[str]:
        return await self._reads.namespaces(collection)
