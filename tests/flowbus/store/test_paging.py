"""The Store contract for paging by cursor (``Query.after``) and :func:`flowbus.store.every`,
held against every store alike (see conftest.py's ``store`` fixture)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from flowbus.errors import InvalidRequest
from flowbus.params import Query
from flowbus.store import Store, cursor_of, every
from flowbus.store.paging import START
from tests.flowbus.store.conftest import Opener

C = "inventory/device"

Between = Callable[[list[dict[str, Any]]], Awaitable[None]]


def text(obj: dict[str, Any]) -> str:
    return str(obj.get("name", ""))


async def by_cursor(store: Store, query: Query, between: Between | None = None) -> list[dict[str, Any]]:
    """Every page of ``query`` by cursor, from the first on, until one comes back empty;
    ``between`` runs after each page (with it) before the next is read."""
    seen: list[dict[str, Any]] = []
    query = replace(query, after=START)
    while True:
        items, _ = await store.query(C, "", query)
        if not items:
            return seen
        seen += items
        if between is not None:
            await between(items)
        query = replace(query, after=cursor_of(query, items[-1]))


async def by_offset(store: Store, query: Query, between: Between) -> list[dict[str, Any]]:
    """The same, by offset, as a LIST of page after page does."""
    seen: list[dict[str, Any]] = []
    while True:
        items, _ = await store.query(C, "", replace(query, offset=len(seen)))
        if not items:
            return seen
        seen += items
        await between(items)


def ids(objects: list[dict[str, Any]]) -> list[str]:
    return [o["id"] for o in objects]


async def test_pages_by_cursor_give_each_object_once_in_order(store: Store) -> None:
    """Pages of any size, read by cursor, are together the whole order: by the sort value with
    the id breaking ties (whatever order the objects were stored in), or by id without a sort;
    also with missing fields, JSON null and values of several types."""
    values: list[Any] = [3, 1, 2, 3, None, 1, "text", 2, 3, True, {"a": 1}, [1, 2], 2.5, "", 1]
    names = [f"k{i:02d}" for i in range(len(values) + 2)]
    random.Random(7).shuffle(names)
    for name, value in zip(names, values, strict=False):
        await store.insert(C, "", {"id": name, "n": value}, text)
    for name in names[len(values) :]:
        await store.insert(C, "", {"id": name}, text)  # no n at all
    for sort in (None, "n", "id"):
        for descending in (False, True):
            query = Query(sort=sort, descending=descending)
            whole, total = await store.query(C, "", replace(query, limit=1000, after=START))
            assert total == len(names) and sorted(ids(whole)) == sorted(names)
            if sort is None:
                assert ids(whole) == sorted(names, reverse=descending)
            ties = [o["id"] for o in whole if o.get("n") == 3 and type(o.get("n")) is int]
            assert ties == sorted(ties, reverse=descending)
            for size in (1, 2, 3, 5):
                assert ids(await by_cursor(store, replace(query, limit=size))) == ids(whole), (sort, descending, size)


async def test_writes_between_pages_skip_or_repeat_nothing(open_store: Opener) -> None:
    """Between the pages, this store and another one (process) on the same data insert objects
    before and after the cursor, delete objects already read and not yet read, and patch objects
    not yet read: every object present throughout comes exactly once, in order, what was
    deleted before it was reached does not come, what was inserted after the cursor does."""
    store = await open_store()
    other = await open_store()
    names = [f"o{i:02d}" for i in range(30)]
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    for name in shuffled:
        await store.insert(C, "", {"id": name, "rank": int(name[1:]) // 3}, text)
    query = Query(limit=4, sort="rank")
    deleted: set[str] = set()
    inserted_after: set[str] = set()
    rounds = 0

    async def between(page: list[dict[str, Any]]) -> None:
        nonlocal rounds
        if rounds == 6:  # writes after every page would give the paging no end
            return
        rounds += 1
        writer = store if rounds % 2 else other
        last = page[-1]
        await writer.delete(C, "", page[0]["id"])  # already read
        deleted.add(page[0]["id"])
        unread = sorted(n for n in names if n not in deleted and (int(n[1:]) // 3, n) > (last["rank"], last["id"]))
        if unread:
            await writer.delete(C, "", unread[-1])  # not read yet: must not come
            deleted.add(unread[-1])
        if len(unread) > 2:
            await writer.patch(C, "", unread[0], {"touched": rounds}, text)  # its rank stays
        for before in "ab":  # before the cursor: two, one more than the delete above
            await writer.insert(C, "", {"id": f"a{rounds:02d}{before}", "rank": -1}, text)
        await writer.insert(C, "", {"id": f"z{rounds:02d}", "rank": 100}, text)  # after it
        inserted_after.add(f"z{rounds:02d}")
        if last["id"].startswith("o"):  # the same rank as the cursor, a larger id: after it
            await writer.insert(C, "", {"id": f"{last['id']}x", "rank": last["rank"]}, text)
            inserted_after.add(f"{last['id']}x")

    seen = await by_cursor(store, query, between)
    got = ids(seen)
    assert len(got) == len(set(got))
    stayed = [n for n in names if n not in deleted or n in got]  # deleted after it was read
    assert [n for n in got if n.startswith("o") and not n.endswith("x")] == stayed
    assert not {n for n in got if n.startswith("a")}
    assert inserted_after <= set(got)
    assert [(o["rank"], o["id"]) for o in seen] == sorted((o["rank"], o["id"]) for o in seen)

    # The same writes make paging by offset lose its place (each page shifts what follows by
    # one, so an object comes twice): the writes above do test something.
    for name in ids((await store.query(C, "", Query(limit=1000)))[0]):
        await store.delete(C, "", name)
    for name in shuffled:
        await store.insert(C, "", {"id": name, "rank": int(name[1:]) // 3}, text)
    deleted.clear()
    rounds = 0
    by_place = ids(await by_offset(store, query, between))
    assert len(by_place) != len(set(by_place))


async def test_cursor_with_filters_descending_and_total(store: Store) -> None:
    """Filters hold on every page; the total counts every matching object, whatever the cursor."""
    for i in range(10):
        await store.insert(C, "", {"id": f"f{i}", "kind": "even" if i % 2 == 0 else "odd", "n": i}, text)
    query = Query(limit=2, sort="n", descending=True, filters={"kind": "even"}, after=START)
    first, total = await store.query(C, "", query)
    assert [o["n"] for o in first] == [8, 6] and total == 5
    second, total = await store.query(C, "", replace(query, after=cursor_of(query, first[-1])))
    assert [o["n"] for o in second] == [4, 2] and total == 5
    last, total = await store.query(C, "", replace(query, after=cursor_of(query, second[-1])))
    assert [o["n"] for o in last] == [0] and total == 5
    empty, total = await store.query(C, "", replace(query, after=cursor_of(query, last[-1])))
    assert empty == [] and total == 5


async def test_a_page_cut_by_its_byte_bound_goes_on_by_cursor(store: Store) -> None:
    """A page that stops at max_bytes is followed, from its last object, by the rest."""
    for i in range(6):
        await store.insert(C, "", {"id": f"b{i}", "pad": "x" * 1000}, text)
    seen = await by_cursor(store, Query(limit=5, max_bytes=2500))
    assert ids(seen) == [f"b{i}" for i in range(6)]


async def test_bad_cursors_are_refused(store: Store) -> None:
    """A cursor that is not one, or one of another order, is INVALID_REQUEST; so is a cursor
    given to a ranked search."""
    await store.insert(C, "", {"id": "a", "n": 1, "name": "core"}, text)
    by_n = Query(sort="n", after=START)
    cursor = cursor_of(by_n, {"id": "a", "n": 1})
    for query in (
        Query(after="not a cursor!"),
        Query(after="bm90IGpzb24"),  # base64 of something that is not JSON
        Query(after=cursor),  # made for sort n
        Query(sort="n", descending=True, after=cursor),
        Query(sort="name", after=cursor),
    ):
        with pytest.raises(InvalidRequest):
            await store.query(C, "", query)
    with pytest.raises(InvalidRequest):
        await store.search(C, "", Query(q="core", after=START))
    found, total = await store.search(C, "", Query(q="", after=START))  # no terms: a query
    assert total == 1 and ids(found) == ["a"]


async def test_every_reads_all_pages_while_others_write(open_store: Opener) -> None:
    """every() answers each object present throughout exactly once, in order, while this store
    and another one (process) insert and delete other objects at the same time."""
    store = await open_store()
    other = await open_store()
    for i in range(40):
        await store.insert(C, "", {"id": f"s{i:02d}", "kind": "stays", "n": i % 4}, text)
    stop = asyncio.Event()

    async def churn(writer: Store, prefix: str) -> None:
        i = 0
        while not stop.is_set():
            await writer.insert(C, "", {"id": f"{prefix}{i:03d}", "kind": "churn", "n": i % 4}, text)
            if i >= 2:
                await writer.delete(C, "", f"{prefix}{i - 2:03d}")
            i += 1

    churning = [asyncio.create_task(churn(store, "c")), asyncio.create_task(churn(other, "d"))]
    try:
        for _ in range(3):
            found = await every(store, C, "", page=3)
            got = ids(found)
            assert len(got) == len(set(got)) and got == sorted(got)
            assert [n for n in got if n.startswith("s")] == [f"s{i:02d}" for i in range(40)]
            by_n = await every(store, C, "", {"kind": "stays"}, sort="n", descending=True, page=7)
            assert [(o["n"], o["id"]) for o in by_n] == sorted(((i % 4, f"s{i:02d}") for i in range(40)), reverse=True)
    finally:
        stop.set()
        await asyncio.gather(*churning)
    assert await every(store, C, "nobody") == []
