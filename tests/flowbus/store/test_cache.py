"""The store's read cache and its fallback batch: exact through writes, other processes and failures."""

from __future__ import annotations

import asyncio
import sqlite3
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from flowbus.errors import Conflict, InternalError
from flowbus.params import Query
from flowbus.store import CachedStore, SQLiteStore
from flowbus.store.cache import ENTRY_OVERHEAD, ObjectCache

C = "inventory/device"


def prepare(obj: dict[str, Any]) -> str:
    return str(obj.get("name", ""))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CachedStore]:
    opened = CachedStore(SQLiteStore(tmp_path / "flowbus.db"), 1 << 20)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


# -- ObjectCache ----------------------------------------------------------------------------------


def test_cache_hands_out_copies() -> None:
    """Changing an object a get returned changes nothing the next get returns."""
    cache = ObjectCache(1 << 10)
    cache.written(("c", "", "a"), {"id": "a", "tags": ["x"]})
    first = cache.get(("c", "", "a"))
    assert first is not None
    first["tags"].append("y")
    assert cache.get(("c", "", "a")) == {"id": "a", "tags": ["x"]}


def test_cache_evicts_least_recently_used_within_its_bytes() -> None:
    """Past its byte limit the cache drops the objects read longest ago, and never holds more."""
    body = orjson.dumps({"id": "a", "pad": "x" * 80})
    cache = ObjectCache(3 * (len(body) + 1 + ENTRY_OVERHEAD))  # 1: the id's one character
    for name in "abc":
        cache.fill(("c", "", name), {"id": name, "pad": "x" * 80}, cache.generation)
    assert cache.get(("c", "", "a")) is not None  # a is now the most recently used
    cache.fill(("c", "", "d"), {"id": "d", "pad": "x" * 80}, cache.generation)
    assert cache.get(("c", "", "b")) is None
    assert all(cache.get(("c", "", n)) is not None for n in "acd")
    assert cache.size <= cache.limit and len(cache) == 3


def test_cache_limit_bounds_the_memory_it_holds() -> None:
    """The byte limit bounds what the cache really holds, keys and buffers included: written
    objects are kept as exact-size copies (orjson's own output sits in a 4 KiB buffer)."""
    limit = 256 << 10
    cache = ObjectCache(limit)
    objects = [{"id": str(uuid.uuid4()), "name": f"sw-{i}", "ip": "10.0.0.1"} for i in range(20_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for obj in objects:
            cache.written(("inventory/device", "", obj["id"]), obj)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) < len(objects)  # it did evict
    assert held <= 1.25 * limit, f"{held} bytes held for a limit of {limit}"


def test_long_ids_and_namespaces_count_against_the_limit() -> None:
    """Keys are counted by what they hold: 512-character ids, made here so that only the cache
    keeps them, in a namespace of their own, stay within the limit too."""
    limit = 256 << 10
    cache = ObjectCache(limit)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(5_000):
            objectid, namespace = f"{'x' * 504}-{i:07d}", f"site-{'y' * 100}-{i % 3}"
            cache.written(("inventory/device", namespace, objectid), {"id": objectid, "name": f"sw-{i}"})
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) < 5_000  # it did evict
    assert held <= 1.25 * limit, f"{held} bytes held for a limit of {limit}"


def test_cache_ignores_a_read_that_raced_a_write() -> None:
    """A read begun before a write must not fill the cache with what it found."""
    cache = ObjectCache(1 << 10)
    began = cache.generation
    cache.written(("c", "", "a"), {"id": "a", "n": 2})
    cache.fill(("c", "", "a"), {"id": "a", "n": 1}, began)
    assert cache.get(("c", "", "a")) == {"id": "a", "n": 2}


def test_cache_of_size_zero_holds_nothing() -> None:
    cache = ObjectCache(0)
    cache.written(("c", "", "a"), {"id": "a"})
    cache.fill(("c", "", "b"), {"id": "b"}, cache.generation)
    assert len(cache) == 0 and cache.get(("c", "", "a")) is None


# -- SQLiteStore with the cache -------------------------------------------------------------------


async def test_get_follows_every_write(store: CachedStore) -> None:
    """Reads by id see each insert, patch and delete as soon as it is answered."""
    await store.insert(C, "", {"id": "x", "name": "one"}, prepare)
    assert (await store.get(C, "", "x"))["name"] == "one"  # type: ignore[index]
    await store.patch(C, "", "x", {"name": "two"}, prepare)
    assert (await store.get(C, "", "x"))["name"] == "two"  # type: ignore[index]
    await store.delete(C, "", "x")
    assert await store.get(C, "", "x") is None
    await store.insert(C, "", {"id": "x", "name": "three"}, prepare)
    assert (await store.get(C, "", "x"))["name"] == "three"  # type: ignore[index]


async def test_reads_racing_writes_never_go_back(store: CachedStore) -> None:
    """Reads of an object interleaved with patches to it never see a value older than one already seen."""
    await store.insert(C, "", {"id": "x", "n": 0}, prepare)
    store.cache.clear()
    seen: list[int] = []

    async def reader() -> None:
        last = 0
        for _ in range(200):
            obj = await store.get(C, "", "x")
            assert obj is not None and obj["n"] >= last
            last = obj["n"]
            seen.append(last)
            await asyncio.sleep(0)

    async def writer() -> None:
        for n in range(1, 51):
            await store.patch(C, "", "x", {"n": n}, prepare)
            if n % 10 == 0:  # as an outside change would: the next reads go to the database
                store.cache.clear()

    await asyncio.gather(reader(), reader(), writer())
    assert (await store.get(C, "", "x"))["n"] == 50  # type: ignore[index]


async def test_change_by_another_process_reaches_get(store: CachedStore, tmp_path: Path) -> None:
    """A write made to the file by another store (another process) reaches the cache through
    the change log: get() answers the new version."""
    await store.insert(C, "", {"id": "x", "name": "before"}, prepare)
    assert (await store.get(C, "", "x"))["name"] == "before"  # type: ignore[index]
    other = SQLiteStore(tmp_path / "flowbus.db")
    await other.open()
    try:
        await other.patch(C, "", "x", {"name": "after"}, prepare)
    finally:
        await other.close()
    for _ in range(600):  # a hang guard
        found = await store.get(C, "", "x")
        if found is not None and found["name"] == "after":
            assert found["version"] == 2
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the other process's change never reached get()")


async def test_an_absent_object_is_remembered_until_it_is_made(store: CachedStore, tmp_path: Path) -> None:
    """A get that finds nothing is remembered (the next one reads nothing), and forgotten when
    the object is made: here, or by another process."""
    assert await store.get(C, "", "later") is None
    assert store.cache.absent((C, "", "later"))  # known absent: no read next time
    assert store.peek(C, "", "later") is None
    assert await store.get(C, "", "later") is None
    await store.insert(C, "", {"id": "later", "name": "here"}, prepare)
    assert (await store.get(C, "", "later"))["name"] == "here"  # type: ignore[index]
    assert await store.get(C, "", "elsewhere") is None
    other = SQLiteStore(tmp_path / "flowbus.db")
    await other.open()
    try:
        await other.insert(C, "", {"id": "elsewhere", "name": "there"}, prepare)
    finally:
        await other.close()
    for _ in range(600):  # a hang guard
        found = await store.get(C, "", "elsewhere")
        if found is not None:
            assert found["name"] == "there"
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the other process's insert never reached get()")


async def test_an_op_failing_halfway_is_undone_alone(store: CachedStore) -> None:
    """An op that fails after writing (not a refusal) is rolled back alone; the batch's others commit."""

    def half_then_fail(conn: sqlite3.Connection) -> None:
        columns = "collection, namespace, id, created, updated, body"
        conn.execute(f"INSERT INTO objects ({columns}) VALUES (?, '', 'half', '', '', '{{}}')", (C,))
        raise RuntimeError("a bug after the first write")

    writes = [store.insert(C, "", {"id": f"o-{i}"}, prepare) for i in range(10)]
    broken = store.inner._write(half_then_fail)  # type: ignore[attr-defined]  # a bug in a write
    results = await asyncio.gather(*writes[:5], broken, *writes[5:], return_exceptions=True)
    assert isinstance(results[5], InternalError)
    assert all(isinstance(r, dict) for r in results[:5] + results[6:])
    assert await store.get(C, "", "half") is None
    for i in range(10):
        assert await store.get(C, "", f"o-{i}") is not None


async def test_a_patch_whose_object_moved_in_its_batch_is_refused_alone(store: CachedStore) -> None:
    """Patches of many objects go to the database together; when one object was moved by an
    earlier write of the same batch, only that patch is refused and the log holds the rest."""
    for i in range(12):
        await store.insert(C, "", {"id": f"m-{i}", "name": f"n{i}"}, prepare)
    start = await store.last_seq()

    def moved_behind(conn: sqlite3.Connection) -> None:  # another writer's change of m-5
        conn.execute("UPDATE objects SET version = 2 WHERE collection = ? AND id = 'm-5'", (C,))

    moving = store.inner._write(moved_behind)  # type: ignore[attr-defined]
    patches = [store.patch(C, "", f"m-{i}", {"name": f"new{i}"}, prepare, expect=1) for i in range(12)]
    results = await asyncio.gather(moving, *patches, return_exceptions=True)
    refused = [i for i, result in enumerate(results[1:]) if not isinstance(result, dict)]
    assert refused == [5] and isinstance(results[6], Conflict)
    changes = await store.changes(start)
    assert sorted(c.objectid for c in changes) == sorted(f"m-{i}" for i in range(12) if i != 5)
    assert all(c.version == 2 and c.data["name"] == f"new{c.objectid[2:]}" for c in changes)
    found, total = await store.search(C, "", Query(q="new7"))
    assert total == 1 and found[0]["id"] == "m-7"
