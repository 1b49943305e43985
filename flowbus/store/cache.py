"""A bounded, write-through cache of stored objects, so that reading a hot object costs no I/O.

Each entry is the object's JSON text; every hit decodes a fresh copy, so nothing the caller does
to its object can change the cache. The cache is least-recently-used and bounded in bytes: the
JSON of each entry, its key's characters, plus :data:`ENTRY_OVERHEAD` for the rest of the key
and bookkeeping, so that the limit bounds the memory the cache really holds.

It stays exact through one rule: a read from the database may fill the cache only if no write
was applied between the start of that read and its end (:attr:`generation` tells), because
such a read may have seen the object as it was before that write.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson

__all__ = ["ObjectCache"]

Key = tuple[str, str, str]
"""(collection, namespace, id)"""

ENTRY_OVERHEAD = 220
"""Bytes an entry holds besides its JSON and the characters of its namespace and id, as
tracemalloc counts them: about 110 for the bytes object's header and the LRU's link, about 110
for the key's tuple and the headers of its strings."""


class ObjectCache:
    """LRU cache of object JSON, at most ``limit`` bytes of it (0 turns the cache off)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.generation = 0
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held: the entries' JSON and their overhead."""
        return self._size

    def get(self, key: Key) -> dict[str, Any] | None:
        """A fresh copy of the cached object, or None on a miss."""
        body = self.peek(key)
        if body is None:
            return None
        obj: dict[str, Any] = orjson.loads(body)
        return obj

    def peek(self, key: Key) -> bytes | None:
        """The cached object's JSON, or None on a miss."""
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def fill(self, key: Key, body: bytes, generation: int) -> None:
        """Remember what a read found, unless a write was applied since the read began."""
        if generation == self.generation:
            self._put(key, body)

    def written(self, key: Key, obj: dict[str, Any] | None) -> None:
        """Record a committed write: the object as it is now, or None once deleted."""
        self.generation += 1
        self._drop(key)
        if obj is not None:
            # orjson hands back its 4 KiB working buffer; an exact-size copy is what is kept.
            self._put(key, orjson.dumps(obj).decode().encode())

    def clear(self) -> None:
        """Forget everything (the database was changed behind the cache's back)."""
        self.generation += 1
        self._entries.clear()
        self._size = 0

    def _put(self, key: Key, body: bytes) -> None:
        cost = _cost(key, body)
        if cost > self.limit:
            return
        self._drop(key)
        self._entries[key] = body
        self._size += cost
        while self._size > self.limit:
            evicted_key, evicted = self._entries.popitem(last=False)
            self._size -= _cost(evicted_key, evicted)

    def _drop(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= _cost(key, old)


def _cost(key: Key, body: bytes) -> int:
    """What an entry counts against the limit (long ids and namespaces cost what they hold)."""
    return len(body) + len(key[1]) + len(key[2]) + ENTRY_OVERHEAD
