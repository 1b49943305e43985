"""A bounded, write-through cache of stored objects, so that reading a hot object costs no I/O.

:class:`CachedStore` wraps any :class:`~flowbus.store.base.Store` with an :class:`ObjectCache`:
its own writes update the cache as they are acknowledged, and every change learnt from the
change log (this process's or another's, see :meth:`CachedStore.changed`) drops an entry older
than the change. It serves :meth:`CachedStore.peek`, the synchronous read of OPEN's fast path.

Each entry is the object's JSON text; every hit decodes a fresh copy, so nothing the caller does
to its object can change the cache. The cache is least-recently-used and bounded in bytes: the
JSON of each entry, its key's characters, plus :data:`ENTRY_OVERHEAD` for the rest of the key
and bookkeeping, so that the limit bounds the memory the cache really holds.

It stays exact through one rule: a read from the database may fill the cache only if no write
was applied between the start of that read and its end (:attr:`generation` tells), because
such a read may have seen the object as it was before that write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

from flowbus.errors import Gone
from flowbus.params import Query
from flowbus.store.base import DELETED, Change, Delete, Encoded, Get, Insert, Patch, Prepare, Store, Write

__all__ = ["BACKOFF", "ENTRY_OVERHEAD", "FOLLOW_WAIT", "CachedStore", "ObjectCache"]

logger = logging.getLogger("flowbus.store")

Key = tuple[str, str, str]
"""(collection, namespace, id)"""

ENTRY_OVERHEAD = 290
"""Bytes an entry holds besides its JSON and the characters of its namespace and id, as
tracemalloc counts them: about 110 for the bytes object's header and the LRU's link, about 110
for the key's tuple and the headers of its strings, about 70 for the (JSON, version) pair that
keeps the version at hand (a change of the object is judged without parsing its JSON)."""

Entry = tuple[bytes, int | None]

FOLLOW_WAIT = 60.0
"""Seconds a follower waits at most for the store to tell of a change before it looks at the
log anyway: a bound on one wait, not a poll (the store wakes it for every commit)."""
BACKOFF = (0.05, 5.0)
"""The first and the longest pause of a follower after it failed to read the change log."""


class ObjectCache:
    """LRU cache of object JSON, at most ``limit`` bytes of it (0 turns the cache off)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.generation = 0
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held: the entries' JSON and their overhead."""
        return self._size

    def get(self, key: Key) -> dict[str, Any] | None:
        """A fresh copy of the cached object, or None on a miss (or when it is known absent)."""
        body = self.peek(key)
        if body is None:
            return None
        obj: dict[str, Any] = orjson.loads(body)
        return obj

    def peek(self, key: Key) -> bytes | None:
        """The cached object's JSON, or None on a miss (or when it is known absent)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0] or None

    def absent(self, key: Key) -> bool:
        """Whether the object is known not to exist (a read found nothing, and nothing was written since)."""
        entry = self._entries.get(key)
        return entry is not None and not entry[0]

    def fill(self, key: Key, obj: dict[str, Any], generation: int) -> None:
        """Remember what a read found, unless a write was applied since the read began."""
        if generation == self.generation:
            self._put(key, _encoded(obj), _version_of(obj))

    def fill_absent(self, key: Key, generation: int) -> None:
        """Remember that a read found no object, unless a write was applied since the read began
        (an insert, here or by another process, replaces or drops the entry like any write)."""
        if generation == self.generation:
            self._put(key, ABSENT, 0)

    def written(self, key: Key, obj: dict[str, Any] | None) -> None:
        """Record a committed write: the object as it is now, or None once deleted."""
        self.generation += 1
        self._drop(key)
        if obj is not None:
            self._put(key, _encoded(obj), _version_of(obj))

    def drop(self, key: Key) -> None:
        """Forget ``key`` (it changed in a way this cache cannot follow)."""
        self.generation += 1
        self._drop(key)

    def version(self, key: Key) -> int | None:
        """The version of the cached object, or None when it is not cached."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def clear(self) -> None:
        """Forget everything (the database was changed behind the cache's back)."""
        self.generation += 1
        self._entries.clear()
        self._size = 0

    def _put(self, key: Key, body: bytes, version: int | None) -> None:
        cost = _cost(key, body)
        if cost > self.limit:
            return
        self._drop(key)
        self._entries[key] = (body, version)
        self._size += cost
        while self._size > self.limit:
            evicted_key, evicted = self._entries.popitem(last=False)
            self._size -= _cost(evicted_key, evicted[0])

    def _drop(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= _cost(key, old[0])


ABSENT = b""
"""The entry of an object known not to exist (version 0: any change of it is newer)."""


def _encoded(obj: dict[str, Any]) -> bytes:
    if isinstance(obj, Encoded):  # the store's own text of it: not encoded again
        return obj.json.encode()
    # orjson hands back its 4 KiB working buffer; an exact-size copy is what is kept.
    return orjson.dumps(obj).decode().encode()


def _version_of(obj: dict[str, Any]) -> int | None:
    version = obj.get("version")
    return version if type(version) is int else None


def _cost(key: Key, body: bytes) -> int:
    """What an entry counts against the limit (long ids and namespaces cost what they hold)."""
    return len(body) + len(key[1]) + len(key[2]) + ENTRY_OVERHEAD


class CachedStore:
    """Any store, with reads by id served from an :class:`ObjectCache` of ``cache_bytes``.

    Args:
        inner: the store that keeps the objects.
        cache_bytes: the most object JSON the cache holds (0 turns it off).
        follow: follow ``inner``'s change log itself, so that other processes' writes reach
            the cache; False when a change feed calls :meth:`changed` instead.
    """

    def __init__(self, inner: Store, cache_bytes: int, *, follow: bool = True) -> None:
        self.inner = inner
        self.cache = ObjectCache(cache_bytes)
        self.follow = follow
        self._follower: asyncio.Task[None] | None = None
        self._open = False

    async def open(self) -> None:
        await self.inner.open()
        self._open = True
        if self.follow:
            since = await self.inner.last_seq()
            self._follower = asyncio.create_task(self._follow(since), name="flowbus-cache-follower")

    async def close(self) -> None:
        self._open = False
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        await self.inner.close()

    def changed(self, change: Change) -> None:
        """Apply a committed change: drop the cached object unless it is that version or newer."""
        key = (change.collection, change.namespace, change.objectid)
        cached = self.cache.version(key)
        if cached is None:
            self.cache.generation += 1  # a read in flight may have seen the object before it
            return
        if change.kind == DELETED or cached < change.version:
            self.cache.drop(key)

    async def _follow(self, since: int | None) -> None:
        """Apply every change of the log, waiting for the store to tell of new ones.

        When the log was trimmed past the cache's place (``Gone``), what was missed cannot be
        known: the cache is emptied and follows on from the newest change, at once. Any other
        failure (the database does not answer) gives no sign of when it ends: the follower
        waits a pause that doubles up to :data:`BACKOFF`'s longest, then resumes where it was.
        """
        pause = BACKOFF[0]
        while True:
            try:
                if since is None:
                    self.cache.clear()
                    since = await self.inner.last_seq()
                await self.inner.wait_changed(since, FOLLOW_WAIT)
                for change in await self.inner.changes(since):
                    self.changed(change)
                    since = change.seq
                pause = BACKOFF[0]
            except asyncio.CancelledError:
                raise
            except Gone:
                logger.warning("the change log was trimmed past what the cache had applied; emptied")
                since = None
            except Exception:
                logger.warning("the cache cannot read the change log; again in %.2f s", pause, exc_info=True)
                await asyncio.sleep(pause)  # a backoff after a failure, not a poll
                pause = min(pause * 2, BACKOFF[1])

    # -- reads ------------------------------------------------------------------------------

    def peek(self, collection: str, namespace: str, objectid: str) -> bytes | None:
        if not self._open:
            return None
        return self.cache.peek((collection, namespace, objectid))

    async def get(self, collection: str, namespace: str, objectid: str) -> dict[str, Any] | None:
        key = (collection, namespace, objectid)
        cached = self.cache.get(key)
        if cached is not None or self.cache.absent(key):
            return cached
        generation = self.cache.generation
        found = await self.inner.get(collection, namespace, objectid)
        if found is not None:
            self.cache.fill(key, found, generation)
        else:
            self.cache.fill_absent(key, generation)
        return found

    async def query(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        return await self.inner.query(collection, namespace, query)

    async def search(self, collection: str, namespace: str, query: Query) -> tuple[list[dict[str, Any]], int]:
        return await self.inner.search(collection, namespace, query)

    async def namespaces(self, collection: str) -> list[str]:
        return await self.inner.namespaces(collection)

    # -- writes -----------------------------------------------------------------------------

    async def insert(self, collection: str, namespace: str, obj: dict[str, Any], prepare: Prepare) -> dict[str, Any]:
        stored = await self.inner.insert(collection, namespace, obj, prepare)
        self.cache.written((collection, namespace, stored["id"]), stored)
        return stored

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
        try:
            stored = await self.inner.patch(collection, namespace, objectid, changes, prepare, expect=expect, base=base)
        except BaseException:
            self.cache.drop((collection, namespace, objectid))  # it may be stale: that can be why
            raise
        self.cache.written((collection, namespace, objectid), stored)
        return stored

    async def delete(
        self, collection: str, namespace: str, objectid: str, *, expect: int | None = None
    ) -> dict[str, Any]:
        try:
            return await self.inner.delete(collection, namespace, objectid, expect=expect)
        finally:
            self.cache.written((collection, namespace, objectid), None)

    async def transaction(self, writes: Sequence[Write]) -> list[dict[str, Any] | None]:
        try:
            results = await self.inner.transaction(writes)
        except BaseException:
            for write in writes:
                self.cache.drop(_key(write))
            raise
        for write, result in zip(writes, results, strict=True):
            if isinstance(write, Get):
                continue
            self.cache.written(_key(write), None if isinstance(write, Delete) else result)
        return results

    # -- the change log ----------------------------------------------------------------------

    async def changes(self, since: int, limit: int = 1000) -> list[Change]:
        return await self.inner.changes(since, limit)

    async def last_seq(self) -> int:
        return await self.inner.last_seq()

    async def first_seq(self) -> int:
        return await self.inner.first_seq()

    async def trim_changes(self, before: str) -> int:
        return await self.inner.trim_changes(before)

    async def wait_changed(self, since: int, timeout: float) -> None:
        await self.inner.wait_changed(since, timeout)


def _key(write: Write) -> Key:
    if isinstance(write, Insert):
        return (write.collection, write.namespace, write.obj["id"])
    if isinstance(write, (Patch, Delete, Get)):
        return (write.collection, write.namespace, write.objectid)
    raise TypeError(f"not a store write: {write!r}")
