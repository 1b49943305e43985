"""The Store contract, held against every store alike (see conftest.py's ``store`` fixture)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowbus.errors import Conflict, DoesNotExist, FlowBusError, Gone, InvalidData
from flowbus.feed import Retention
from flowbus.params import Query
from flowbus.store import Delete, Get, Insert, Patch, Store
from tests.flowbus.store.conftest import Opener

C = "inventory/device"


def text(obj: dict[str, Any]) -> str:
    """A prepare that takes every object and indexes its name."""
    return str(obj.get("name", ""))


def refuse(obj: dict[str, Any]) -> str:
    if obj.get("bad"):
        raise InvalidData("bad", field="bad")
    return text(obj)


async def put(store: Store, objectid: str, namespace: str = "", **fields: Any) -> dict[str, Any]:
    return await store.insert(C, namespace, {"id": objectid, **fields}, text)


# -- objects ----------------------------------------------------------------------------------


async def test_insert_get_and_meta(store: Store) -> None:
    """An inserted object comes back with its id, timestamps and version 1; meta given is ignored."""
    stored = await store.insert(C, "", {"id": "a", "name": "sw", "version": 9, "created": "x"}, text)
    assert stored["version"] == 1 and stored["created"] == stored["updated"] != "x"
    assert await store.get(C, "", "a") == stored
    assert await store.get(C, "", "missing") is None


async def test_insert_twice_is_conflict(store: Store) -> None:
    """An id taken in a namespace is CONFLICT there, and free in another."""
    await put(store, "a")
    with pytest.raises(Conflict):
        await put(store, "a", name="again")
    assert (await put(store, "a", namespace="other"))["id"] == "a"
    assert (await store.get(C, "", "a")) is not None and (await store.get(C, "", "a"))["id"] == "a"  # type: ignore[index]


async def test_patch_merges_and_counts_versions(store: Store) -> None:
    """A patch merges top-level fields, keeps the rest and adds one to the version."""
    await put(store, "a", name="sw", n=1)
    first = await store.patch(C, "", "a", {"n": 2}, text)
    second = await store.patch(C, "", "a", {"m": 3, "version": 99}, text)
    assert (first["version"], second["version"]) == (2, 3)
    assert await store.get(C, "", "a") == second and second["name"] == "sw" and second["n"] == 2


async def test_conditional_patch_and_delete(store: Store) -> None:
    """With expect=, a stale version is CONFLICT and nothing changes; the right one writes."""
    await put(store, "a", n=1)
    await store.patch(C, "", "a", {"n": 2}, text)
    with pytest.raises(Conflict):
        await store.patch(C, "", "a", {"n": 3}, text, expect=1)
    with pytest.raises(Conflict):
        await store.delete(C, "", "a", expect=1)
    current = await store.get(C, "", "a")
    assert current is not None and (current["n"], current["version"]) == (2, 2)
    assert (await store.patch(C, "", "a", {"n": 3}, text, expect=2))["version"] == 3
    assert (await store.delete(C, "", "a", expect=3))["n"] == 3
    assert await store.get(C, "", "a") is None


async def test_patch_on_the_callers_base(store: Store) -> None:
    """A patch given the object the caller read (``base``) merges on it; a stale base is CONFLICT."""
    first = await put(store, "a", name="sw", n=1)
    second = await store.patch(C, "", "a", {"n": 2}, text, expect=1, base=first)
    assert (second["version"], second["name"], second["n"]) == (2, "sw", 2)
    with pytest.raises(Conflict):  # the caller's copy is at version 1: the object moved on
        await store.patch(C, "", "a", {"n": 3}, text, expect=1, base=first)
    third = await store.patch(C, "", "a", {"m": 3}, text, expect=2, base=second)
    assert await store.get(C, "", "a") == third and (third["n"], third["m"], third["version"]) == (2, 3, 3)


async def test_missing_objects(store: Store) -> None:
    """patch and delete of nothing are DO_NOT_EXIST."""
    with pytest.raises(DoesNotExist):
        await store.patch(C, "", "nope", {"n": 1}, text)
    with pytest.raises(DoesNotExist):
        await store.delete(C, "", "nope")


async def test_refused_write_changes_nothing(store: Store) -> None:
    """A write its prepare refuses is not kept and records no change."""
    await put(store, "a", n=1)
    last = await store.last_seq()
    with pytest.raises(InvalidData):
        await store.patch(C, "", "a", {"bad": True}, refuse)
    with pytest.raises(InvalidData):
        await store.insert(C, "", {"id": "b", "bad": True}, refuse)
    assert await store.last_seq() == last
    assert await store.get(C, "", "b") is None and (await store.get(C, "", "a")) is not None


async def test_concurrent_patches_all_land(store: Store) -> None:
    """Patches of one object at once are each merged on the latest version."""
    await put(store, "x")
    results = await asyncio.gather(*(store.patch(C, "", "x", {f"f{i}": i}, text) for i in range(10)))
    assert sorted(r["version"] for r in results) == list(range(2, 12))
    final = await store.get(C, "", "x")
    assert final is not None and all(final[f"f{i}"] == i for i in range(10))


async def test_patches_of_one_object_from_two_stores_all_land(open_store: Opener) -> None:
    """Patches of one object made at once through two stores (processes) on the same data: the
    one whose object moved between its read and its write merges again, so every patch lands."""
    store = await open_store()
    other = await open_store()
    await put(store, "x")
    writers = [store, other] * 5
    results = await asyncio.gather(*(w.patch(C, "", "x", {f"f{i}": i}, text) for i, w in enumerate(writers)))
    assert sorted(r["version"] for r in results) == list(range(2, 12))
    for reader in (store, other):  # query: a cache learns of the other store's writes only later
        (final,), _ = await reader.query(C, "", Query())
        assert final["version"] == 11 and all(final[f"f{i}"] == i for i in range(10))


# -- queries ----------------------------------------------------------------------------------


async def test_query_filters_sort_paging_total(store: Store) -> None:
    """Filters (a query-string number matches the number), sort, paging and the total."""
    for i in range(7):
        await put(store, f"o{i}", kind="even" if i % 2 == 0 else "odd", n=i)
    items, total = await store.query(
        C, "", Query(limit=2, offset=1, sort="n", descending=True, filters={"kind": "even"})
    )
    assert total == 4 and [o["n"] for o in items] == [4, 2]
    items, total = await store.query(C, "", Query(filters={"n": "3"}))
    assert total == 1 and items[0]["id"] == "o3"
    items, total = await store.query(C, "", Query(offset=100))
    assert (items, total) == ([], 7)


async def test_query_page_stops_at_max_bytes(store: Store) -> None:
    """A page stops after the object whose JSON passes max_bytes; the first always comes."""
    for i in range(5):
        await put(store, f"big{i}", pad="x" * 1000)
    items, total = await store.query(C, "", Query(limit=5, max_bytes=2500))
    assert total == 5 and 1 <= len(items) < 5
    items, _ = await store.query(C, "", Query(limit=5, max_bytes=10))
    assert len(items) == 1


async def test_search_ranks_and_keeps_namespaces(store: Store) -> None:
    """Search matches every term as a prefix, in its namespace only."""
    await put(store, "a", name="core switch")
    await put(store, "b", name="edge router")
    await put(store, "c", namespace="other", name="core router")
    items, total = await store.search(C, "", Query(q="cor"))
    assert total == 1 and items[0]["id"] == "a"
    items, total = await store.search(C, "", Query(q="router"))
    assert [o["id"] for o in items] == ["b"]


# -- namespaces -------------------------------------------------------------------------------


async def test_namespaces_of_a_collection(store: Store) -> None:
    """The namespaces holding an object of the collection, sorted, each once; other collections'
    namespaces are not among them."""
    assert await store.namespaces(C) == []
    await put(store, "a", namespace="tenant-b")
    await put(store, "b", namespace="tenant-b")
    await put(store, "c", namespace="")
    await put(store, "d", namespace="tenant-a")
    await store.insert("other/kind", "elsewhere", {"id": "e"}, text)
    assert await store.namespaces(C) == ["", "tenant-a", "tenant-b"]
    assert await store.namespaces("other/kind") == ["elsewhere"]
    assert await store.namespaces("no/such") == []


async def test_namespaces_follow_writes(open_store: Opener) -> None:
    """A namespace goes once its last object of the collection is deleted, comes with a
    transaction's insert, and the namespaces of objects written by another store (process) on
    the same data are listed too."""
    store = await open_store()
    other = await open_store()
    await put(store, "a", namespace="n1")
    await put(store, "b", namespace="n1")
    await put(other, "c", namespace="n2")
    assert await store.namespaces(C) == ["n1", "n2"]
    await store.delete(C, "n1", "a")
    assert await store.namespaces(C) == ["n1", "n2"]
    await store.transaction([Delete(C, "n1", "b"), Insert(C, "n0", {"id": "d"}, text)])
    assert await store.namespaces(C) == ["n0", "n2"]
    assert await other.namespaces(C) == ["n0", "n2"]
    await other.delete(C, "n2", "c")
    assert await store.namespaces(C) == ["n0"]


# -- transactions -----------------------------------------------------------------------------


async def test_transaction_all_in_order_with_reads(store: Store) -> None:
    """Each write sees those before it; a Get reads the transaction's own state."""
    await put(store, "old", n=1)
    results = await store.transaction(
        [
            Insert(C, "", {"id": "new", "n": 1}, text),
            Patch(C, "", "new", {"n": 2}, text),
            Get(C, "", "new"),
            Delete(C, "", "old", expect=1),
            Get(C, "", "old"),
        ]
    )
    assert results[1] is not None and results[1]["version"] == 2
    assert results[2] is not None and results[2]["n"] == 2
    assert results[4] is None
    assert await store.get(C, "", "old") is None


@pytest.mark.parametrize(
    "bad",
    [
        Insert(C, "", {"id": "keep"}, text),
        Patch(C, "", "missing", {"n": 1}, text),
        Patch(C, "", "keep", {"n": 9}, text, expect=7),
        Delete(C, "", "keep", expect=7),
        Get(C, "", "keep", expect=7),
        Insert(C, "", {"id": "b", "bad": True}, refuse),
    ],
    ids=["conflict", "missing", "stale-patch", "stale-delete", "stale-get", "invalid"],
)
async def test_transaction_all_or_none(store: Store, bad: Any) -> None:
    """The first refusal refuses the whole: nothing of it is kept, no change is recorded."""
    await put(store, "keep", n=1)
    last = await store.last_seq()
    with pytest.raises(FlowBusError):
        await store.transaction([Insert(C, "", {"id": "t1"}, text), Patch(C, "", "keep", {"n": 2}, text), bad])
    assert await store.get(C, "", "t1") is None
    kept = await store.get(C, "", "keep")
    assert kept is not None and kept["n"] == 1 and kept["version"] == 1
    assert await store.last_seq() == last


# -- the change log ---------------------------------------------------------------------------


async def test_every_write_is_one_change_in_commit_order(store: Store) -> None:
    """Insert, patch, delete and a transaction's writes each record one change, in order."""
    start = await store.last_seq()
    await put(store, "a", n=1)
    await store.patch(C, "", "a", {"n": 2}, text)
    await store.transaction([Insert(C, "", {"id": "b"}, text), Patch(C, "", "b", {"n": 1}, text)])
    await store.delete(C, "", "a")
    changes = await store.changes(start)
    assert [(c.kind, c.objectid, c.version) for c in changes] == [
        ("CREATED", "a", 1),
        ("UPDATED", "a", 2),
        ("CREATED", "b", 1),
        ("UPDATED", "b", 2),
        ("DELETED", "a", 2),
    ]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and seqs[3] == seqs[2] + 1
    assert changes[1].data["n"] == 2 and changes[4].data["n"] == 2 and changes[0].collection == C


async def test_a_burst_of_patches_lands_with_its_changes_and_search_text(store: Store) -> None:
    """Patches of many objects at once (committed together where the store groups them): each
    one lands or is refused whole, the log has one change per patch that landed, with its data,
    and search finds the new text, not the old."""
    for i in range(20):
        await put(store, f"p{i}", name=f"old{i}")
    start = await store.last_seq()
    stale = store.patch(C, "", "p0", {"name": "late"}, text, expect=0)
    fresh = [store.patch(C, "", f"p{i}", {"name": f"new{i}"}, text, expect=1) for i in range(20)]
    results = await asyncio.gather(stale, *fresh, return_exceptions=True)
    assert isinstance(results[0], Conflict)
    assert [r["version"] for r in results[1:] if isinstance(r, dict)] == [2] * 20
    changes = await store.changes(start)
    assert sorted((c.objectid, c.version, c.data["name"]) for c in changes) == sorted(
        (f"p{i}", 2, f"new{i}") for i in range(20)
    )
    assert all(c.kind == "UPDATED" for c in changes)
    assert [c.seq for c in changes] == list(range(changes[0].seq, changes[0].seq + 20))
    found, total = await store.search(C, "", Query(q="new7"))
    assert total == 1 and found[0]["id"] == "p7"
    assert (await store.search(C, "", Query(q="old7")))[1] == 0


async def test_patches_that_drop_the_search_text_leave_no_match(store: Store) -> None:
    """Objects whose new version has no search text are no longer found by their old text."""
    for i in range(10):
        await put(store, f"q{i}", name=f"findme{i}")
    await asyncio.gather(*(store.patch(C, "", f"q{i}", {"name": ""}, lambda obj: "") for i in range(10)))
    for i in range(10):
        assert (await store.search(C, "", Query(q=f"findme{i}")))[1] == 0


async def test_changes_resume_from_a_seq_and_survive_reopening(open_store: Opener) -> None:
    """changes(since=k) gives exactly what came after k, also from a store opened afresh."""
    store = await open_store()
    for i in range(5):
        await put(store, f"o{i}")
    all_changes = await store.changes(0)
    k = all_changes[1].seq
    again = await open_store()
    assert [c.objectid for c in await again.changes(k)] == ["o2", "o3", "o4"]
    assert [c.objectid for c in await again.changes(k, limit=1)] == ["o2"]
    assert await again.last_seq() == all_changes[-1].seq


async def test_trimmed_changes_are_gone(store: Store) -> None:
    """After a trim, a since before what is kept answers GONE; since at or after it works."""
    await put(store, "a")
    await put(store, "b")
    removed = await store.trim_changes("2999-01-01T00:00:00Z")
    assert removed >= 2
    first = await store.first_seq()
    assert first == await store.last_seq()
    with pytest.raises(Gone):
        await store.changes(0)
    assert await store.changes(first) == []
    await put(store, "c")
    assert [c.objectid for c in await store.changes(first)] == ["c"]


async def test_wait_changed_wakes_on_a_write_from_another_store(open_store: Opener) -> None:
    """wait_changed returns when another store (process) on the same data commits, and at timeout."""
    store = await open_store()
    other = await open_store()
    since = await store.last_seq()
    await store.wait_changed(since, 0.05)  # nothing happens: it returns at the timeout
    waiter = asyncio.create_task(store.wait_changed(since, 30))
    await asyncio.sleep(0.01)
    await put(other, "from-elsewhere")
    await asyncio.wait_for(waiter, 30)  # a hang guard, not a speed assertion
    assert [c.objectid for c in await store.changes(since)] == ["from-elsewhere"]


async def test_wait_changed_after_own_commits_still_sees_another_store(open_store: Opener) -> None:
    """A store that has caught up with its own commits wakes for another store's commit, and
    one of another store's changes between two of its own is not passed over."""
    store = await open_store()
    other = await open_store()
    await put(store, "mine-1")
    since = await store.last_seq()
    waiter = asyncio.create_task(store.wait_changed(since, 30))
    await asyncio.sleep(0.01)
    await put(other, "theirs")
    await asyncio.wait_for(waiter, 30)  # a hang guard, not a speed assertion
    assert [c.objectid for c in await store.changes(since)] == ["theirs"]
    await put(store, "mine-2")
    await asyncio.wait_for(store.wait_changed(since, 30), 30)
    assert [c.objectid for c in await store.changes(since)] == ["theirs", "mine-2"]


async def test_changes_of_two_stores_on_one_database_come_in_one_order(open_store: Opener) -> None:
    """Writes of this store and of another one on the same data, interleaved: each store's
    changes() gives all of them, in commit order, without a gap, and in batches that resume."""
    store = await open_store()
    other = await open_store()
    since = await store.last_seq()
    await put(store, "mine-1")
    await put(other, "theirs-1")
    await put(store, "mine-2")
    await store.patch(C, "", "mine-1", {"n": 1}, text)
    await put(other, "theirs-2")
    expected = ["mine-1", "theirs-1", "mine-2", "mine-1", "theirs-2"]
    for reader in (store, other):
        changes = await reader.changes(since)
        assert [c.objectid for c in changes] == expected
        assert [c.seq for c in changes] == list(range(changes[0].seq, changes[0].seq + 5))
        assert changes[3].data["n"] == 1 and changes[3].version == 2
        resumed: list[str] = []
        after = since
        while batch := await reader.changes(after, 2):  # two at a time, resuming from the last
            resumed += [c.objectid for c in batch]
            after = batch[-1].seq
        assert resumed == expected


async def test_retention_trims_what_is_older_than_it_keeps(store: Store) -> None:
    """Retention with nothing to keep trims every change; one that keeps a day trims none."""
    await put(store, "a")
    await put(store, "b")
    assert await Retention(store, 86400).trim() == 0
    assert len(await store.changes(0)) == 2
    assert await Retention(store, -1).trim() == 2
    with pytest.raises(Gone):
        await store.changes(0)
