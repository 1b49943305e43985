"""The SQLite store, used directly on a real file: group commit, writes, queries, search, namespaces."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowbus.errors import Conflict, DoesNotExist, InvalidData, InvalidRequest, Unavailable
from flowbus.params import Query
from flowbus.store import Delete, Insert, Patch, SQLiteStore
from tests.flowbus.helpers import TIMESTAMP, count_batches

C = "inventory/device"
META = ("id", "created", "updated")


def prepare(obj: dict[str, Any]) -> str:
    """Accept everything; search text is every top-level text or number field."""
    return " ".join(str(v) for k, v in obj.items() if k not in META and isinstance(v, (str, int, float)))


def refuse(obj: dict[str, Any]) -> str:
    raise InvalidData("Field 'name': refused", field="name")


def crash(obj: dict[str, Any]) -> str:
    raise RuntimeError("a bug in prepare")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open store on a fresh file."""
    opened = SQLiteStore(tmp_path / "data" / "flowbus.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def batches(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the writer commits, in order."""
    return count_batches(store, monkeypatch)


async def insert(store: SQLiteStore, objectid: str, namespace: str = "", **fields: Any) -> dict[str, Any]:
    return await store.insert(C, namespace, {"id": objectid, **fields}, prepare)


# -- group commit -------------------------------------------------------------------------------


async def test_group_commit_one_refused_write_keeps_the_others(store: SQLiteStore, batches: list[int]) -> None:
    """Concurrent writes share one commit; a CONFLICT undoes nothing else, and writes refused while
    they are validated (INVALID_DATA, a bug in validation, a patch of nothing) never reach it."""
    writes = [store.insert(C, "", {"id": f"o-{i}", "n": i}, prepare) for i in range(100)]
    writes.insert(50, store.insert(C, "", {"id": "o-10", "n": -1}, prepare))
    writes.insert(20, store.insert(C, "", {"id": "bad", "n": 0}, refuse))
    writes.insert(70, store.insert(C, "", {"id": "bug", "n": 0}, crash))
    writes.insert(30, store.patch(C, "", "missing", {"n": 1}, prepare))
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert batches == [101]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert [type(e) for e in errors] == [InvalidData, DoesNotExist, Conflict, RuntimeError]
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert sorted(obj["n"] for obj in stored) == list(range(100))
    assert (await store.get(C, "", "o-10"))["n"] == 10  # type: ignore[index]
    assert await store.get(C, "", "bad") is None
    assert await store.get(C, "", "bug") is None
    items, total = await store.query(C, "", Query(limit=1000))
    assert total == 100 and len(items) == 100


async def test_group_commit_bounded_batches(store: SQLiteStore, batches: list[int]) -> None:
    """More queued writes than one batch holds are committed in several batches, every one answered."""
    results = await asyncio.gather(*(insert(store, f"o-{i}", n=i) for i in range(1200)))
    assert [obj["n"] for obj in results] == list(range(1200))
    assert sum(batches) == 1200 and max(batches) <= 512 and len(batches) >= 3
    assert (await store.query(C, "", Query()))[1] == 1200


async def test_concurrent_patches_of_one_object_all_land(store: SQLiteStore) -> None:
    """Patches of one object made at once are each merged on the latest version: none is lost."""
    await insert(store, "x", n=0)
    results = await asyncio.gather(*(store.patch(C, "", "x", {f"f{i}": i}, prepare) for i in range(20)))
    assert sorted(r["version"] for r in results) == list(range(2, 22))
    final = await store.get(C, "", "x")
    assert final is not None and final["version"] == 21
    assert all(final[f"f{i}"] == i for i in range(20))


def index_matches_table(store: SQLiteStore) -> bool:
    """Every object has exactly its own search entry (read from the file, not the cache)."""
    with sqlite3.connect(store.path) as conn:
        count = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
        paired = conn.execute("SELECT count(*) FROM objects o JOIN objects_fts f ON f.rowid = o.seq").fetchone()[0]
        entries = conn.execute("SELECT count(*) FROM objects_fts").fetchone()[0]
    return bool(count == paired == entries)


async def test_inserts_of_one_batch_stored_and_indexed_each(store: SQLiteStore, batches: list[int]) -> None:
    """Inserts that share a commit keep every field as given and each finds its own search entry,
    also after the newest object was deleted (its number is not used again)."""
    await insert(store, "first", word="zero")
    await store.delete(C, "", "first")
    odd = 'quote " backslash \\ tab \t emoji \U0001f600 nul \x00 Göteborg'
    await asyncio.gather(*(insert(store, f"o-{i}", word=f"w{i}x", odd=odd, n=i, x=[i, {"k": None}]) for i in range(30)))
    assert batches[-1] == 30
    writes = [insert(store, f"o-{i}", word=f"w{i}x", odd=odd, n=i, x=[i, {"k": None}]) for i in range(30, 40)]
    writes.insert(5, insert(store, "o-3", word="taken"))  # refused: this batch is run again op by op
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert batches[-1] == 11
    assert [type(r) for r in results].count(Conflict) == 1
    for i in range(40):
        found = await store.get(C, "", f"o-{i}")
        assert found is not None and (found["odd"], found["n"], found["x"]) == (odd, i, [i, {"k": None}])
        items, total = await store.search(C, "", Query(q=f"w{i}x"))
        assert ([obj["id"] for obj in items], total) == ([f"o-{i}"], 1)
    assert (await store.search(C, "", Query(q="zero")))[1] == 0
    assert index_matches_table(store)


async def test_writes_survive_reopening(tmp_path: Path) -> None:
    """Every answered write is there after the store is closed and opened again."""
    path = tmp_path / "flowbus.db"
    first = SQLiteStore(path)
    await first.open()
    await asyncio.gather(*(first.insert(C, "ns", {"id": f"o-{i}"}, prepare) for i in range(50)))
    await first.patch(C, "ns", "o-1", {"name": "patched"}, prepare)
    await first.delete(C, "ns", "o-2")
    await first.close()
    second = SQLiteStore(path, synchronous="normal")
    await second.open()
    try:
        assert (await second.query(C, "ns", Query()))[1] == 49
        assert (await second.get(C, "ns", "o-1"))["name"] == "patched"  # type: ignore[index]
        assert await second.get(C, "ns", "o-2") is None
        assert [o["id"] for o in (await second.search(C, "ns", Query(q="patched")))[0]] == ["o-1"]
    finally:
        await second.close()


async def test_closed_store_refuses(tmp_path: Path) -> None:
    """After close, writes answer UNAVAILABLE and reads too."""
    store = SQLiteStore(tmp_path / "flowbus.db")
    await store.open()
    await store.close()
    with pytest.raises(Unavailable):
        await insert(store, "late")
    with pytest.raises(Unavailable):
        await store.get(C, "", "late")


async def test_failed_open_leaves_no_thread(tmp_path: Path) -> None:
    """A store that cannot open raises and leaves no thread behind (it would keep the process alive)."""
    (tmp_path / "flowbus.db").mkdir()
    before = set(threading.enumerate())
    store = SQLiteStore(tmp_path / "flowbus.db")
    with pytest.raises(sqlite3.Error):
        await store.open()
    assert set(threading.enumerate()) <= before


def test_bad_synchronous_setting(tmp_path: Path) -> None:
    """Only FULL and NORMAL are accepted for synchronous."""
    with pytest.raises(ValueError):
        SQLiteStore(tmp_path / "x.db", synchronous="off")


# -- single writes ------------------------------------------------------------------------------


async def test_insert_sets_timestamps(store: SQLiteStore) -> None:
    """insert answers the object with created == updated (RFC 3339, Z) and get returns the same."""
    obj = await insert(store, "a", name="sw", nested={"x": [1, 2]})
    assert TIMESTAMP.fullmatch(obj["created"]) and obj["updated"] == obj["created"]
    assert obj == {
        "id": "a",
        "name": "sw",
        "nested": {"x": [1, 2]},
        "created": obj["created"],
        "version": 1,
        "updated": obj["created"],
    }
    assert await store.get(C, "", "a") == obj
    assert await store.get(C, "", "b") is None


async def test_patch_merges_top_level_fields(store: SQLiteStore) -> None:
    """patch merges the given fields, keeps id and created, answers and stores the merged object."""
    obj = await insert(store, "a", name="sw", location="lab", nested={"x": 1, "y": 2})
    changes = {"location": "rack", "nested": {"x": 3}, "id": "b", "created": "1999-01-01T00:00:00Z"}
    merged = await store.patch(C, "", "a", changes, prepare)
    assert merged["id"] == "a" and merged["created"] == obj["created"]
    assert merged["updated"] >= obj["updated"]
    assert (merged["name"], merged["location"], merged["nested"]) == ("sw", "rack", {"x": 3})
    assert await store.get(C, "", "a") == merged
    assert await store.get(C, "", "b") is None


@pytest.mark.parametrize("operation", ["patch", "delete"])
async def test_missing_object(store: SQLiteStore, operation: str) -> None:
    """patch and delete of an object that does not exist raise DoesNotExist."""
    await insert(store, "a", namespace="other")
    with pytest.raises(DoesNotExist):
        if operation == "patch":
            await store.patch(C, "", "a", {"n": 1}, prepare)
        else:
            await store.delete(C, "", "a")


async def test_refused_patch_changes_nothing(store: SQLiteStore) -> None:
    """A patch that prepare refuses leaves the object and its search text as they were."""
    obj = await insert(store, "a", name="alpha")
    with pytest.raises(InvalidData):
        await store.patch(C, "", "a", {"name": "omega"}, refuse)
    assert await store.get(C, "", "a") == obj
    assert (await store.search(C, "", Query(q="omega")))[1] == 0
    assert (await store.search(C, "", Query(q="alpha")))[1] == 1


async def test_delete_answers_the_object(store: SQLiteStore) -> None:
    """delete answers what was deleted; then get finds nothing and search neither."""
    obj = await insert(store, "a", name="findme")
    assert await store.delete(C, "", "a") == obj
    assert await store.get(C, "", "a") is None
    assert (await store.search(C, "", Query(q="findme")))[1] == 0
    again = await insert(store, "a", name="reborn")
    assert await store.get(C, "", "a") == again


async def test_duplicate_insert(store: SQLiteStore) -> None:
    """A second insert of an id is Conflict and keeps the first object."""
    first = await insert(store, "a", name="first")
    with pytest.raises(Conflict):
        await insert(store, "a", name="second")
    assert await store.get(C, "", "a") == first


# -- transactions -------------------------------------------------------------------------------


async def test_transaction_makes_every_write_in_order(store: SQLiteStore) -> None:
    """Each write sees those before it; the results are what the single writes answer; the reads
    after it (the cache and the database) see them all."""
    await insert(store, "old", name="old")
    results = await store.transaction(
        [
            Insert(C, "", {"id": "new", "name": "new"}, prepare),
            Patch(C, "", "new", {"site": "lab"}, prepare),
            Delete(C, "", "old"),
        ]
    )
    assert [r["id"] for r in results] == ["new", "new", "old"]
    assert results[1]["site"] == "lab" and results[1]["created"] == results[0]["created"]
    assert await store.get(C, "", "new") == results[1]
    assert await store.get(C, "", "old") is None
    assert (await store.search(C, "", Query(q="lab")))[1] == 1
    reopened = SQLiteStore(store.path)
    await reopened.open()
    try:
        assert await reopened.get(C, "", "new") == results[1] and await reopened.get(C, "", "old") is None
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("last", "error"),
    [
        (Insert(C, "", {"id": "kept", "name": "again"}, prepare), Conflict),
        (Patch(C, "", "nobody", {"x": 1}, prepare), DoesNotExist),
        (Patch(C, "", "kept", {"x": 1}, refuse), InvalidData),
        (Delete(C, "", "nobody"), DoesNotExist),
        (Insert(C, "", {"id": "bug"}, crash), RuntimeError),
    ],
    ids=["conflict", "patch-missing", "refused", "delete-missing", "bug"],
)
async def test_a_refused_write_undoes_the_whole_transaction(
    store: SQLiteStore, last: Any, error: type[Exception]
) -> None:
    """When the last write refuses, the first two are not kept, in the cache or the database,
    and a write of another caller committed with it is."""
    kept = await insert(store, "kept", name="kept")
    first = Insert(C, "", {"id": "first", "name": "first"}, prepare)
    change = Patch(C, "", "kept", {"name": "changed"}, prepare)
    transaction = store.transaction([first, change, last])
    failed, other = await asyncio.gather(transaction, insert(store, "other"), return_exceptions=True)
    assert isinstance(failed, error), failed
    assert isinstance(other, dict)
    assert await store.get(C, "", "first") is None
    assert await store.get(C, "", "kept") == kept
    assert (await store.search(C, "", Query(q="changed")))[1] == 0
    assert await store.get(C, "", "other") == other


async def test_an_empty_transaction_writes_nothing(store: SQLiteStore) -> None:
    assert await store.transaction([]) == []


# -- queries ------------------------------------------------------------------------------------


@pytest.fixture
async def devices(store: SQLiteStore) -> list[dict[str, Any]]:
    """Six objects with assorted field types, created in order."""
    rows = [
        {"name": "a", "port": 22, "up": True, "site": "lab", "weight": 1.5},
        {"name": "b", "port": 80, "up": False, "site": "lab"},
        {"name": "c", "port": 22, "up": True, "site": "hall", "big": 2**64 - 1},
        {"name": "d", "port": "22", "site": None},
        {"name": "e", "port": 443, "tags": ["x", "y"]},
        {"name": "f", "port": -5, "site": "lab", "weight": 1.5},
    ]
    return [await insert(store, f"d-{i}", **row) for i, row in enumerate(rows)]


FILTERS = [
    ({"port": 22}, "ac"),
    ({"port": "22"}, "acd"),
    ({"port": "-5"}, "f"),
    ({"port": 443, "name": "e"}, "e"),
    ({"site": "lab"}, "abf"),
    ({"site": "lab", "port": "22"}, "a"),
    ({"up": "true"}, "ac"),
    ({"up": True}, "ac"),
    ({"up": "false"}, "b"),
    ({"site": None}, "de"),
    ({"weight": "1.5"}, "af"),
    ({"weight": 1.5}, "af"),
    ({"big": 2**64 - 1}, "c"),
    ({"big": str(2**64 - 1)}, "c"),
    ({"tags": ["x", "y"]}, "e"),
    ({"id": "d-3"}, "d"),
    ({"colour": "red"}, ""),
    ({"port": "twenty-two"}, ""),
]


@pytest.mark.parametrize(
    ("filters", "expected"),
    FILTERS,
    ids=[
        "number-matches-numbers",
        "string-matches-number-and-string",
        "negative-string",
        "two-fields",
        "string",
        "string-and-number",
        "true-string",
        "true",
        "false-string",
        "none-is-null-or-absent",
        "float-string",
        "float",
        "u64",
        "u64-string",
        "array",
        "id-column",
        "unknown-field",
        "no-match",
    ],
)
async def test_query_filters(
    store: SQLiteStore, devices: list[dict[str, Any]], filters: dict[str, Any], expected: str
) -> None:
    """Exact filters on top-level fields, with query-string strings matching numbers and booleans."""
    items, total = await store.query(C, "", Query(filters=filters))
    assert "".join(obj["name"] for obj in items) == expected
    assert total == len(expected)


SORTS = [
    (None, False, "abcdef"),
    (None, True, "fedcba"),
    ("name", True, "fedcba"),
    ("id", False, "abcdef"),
    ("site", False, "decabf"),
    ("weight", True, "faedcb"),
]


@pytest.mark.parametrize(
    "query",
    [
        Query(filters={"name') IS NOT NULL OR ('": "x"}),
        Query(sort="name'); DROP TABLE objects; --"),
        Query(filters={"": 1}),
    ],
    ids=["filter", "sort", "empty"],
)
async def test_a_query_built_in_code_cannot_put_sql_in_a_field_name(
    store: SQLiteStore, devices: list[dict[str, Any]], query: Query
) -> None:
    """Field names go into the SQL text, so the store checks them itself, not only
    Query.from_parameters: an endpoint may build a Query from anything."""
    with pytest.raises(InvalidRequest):
        await store.query(C, "", query)
    assert (await store.query(C, "", Query()))[1] == len(devices)


@pytest.mark.parametrize(("sort", "descending", "expected"), SORTS, ids=[f"{s}-{d}" for s, d, _ in SORTS])
async def test_query_sort(
    store: SQLiteStore, devices: list[dict[str, Any]], sort: str | None, descending: bool, expected: str
) -> None:
    """Sort by a field (null and missing first), ties in insertion order; descending reverses both."""
    items, _ = await store.query(C, "", Query(sort=sort, descending=descending))
    assert "".join(obj["name"] for obj in items) == expected


async def test_query_paging(store: SQLiteStore, devices: list[dict[str, Any]]) -> None:
    """limit and offset cut a page; total counts every match."""
    items, total = await store.query(C, "", Query(limit=2, offset=3))
    assert [obj["name"] for obj in items] == ["d", "e"]
    assert total == 6
    items, total = await store.query(C, "", Query(limit=5, offset=100))
    assert (items, total) == ([], 6)
    items, total = await store.query(C, "", Query(limit=1, offset=0, filters={"site": "lab"}, sort="name"))
    assert ([obj["name"] for obj in items], total) == (["a"], 3)


# -- search -------------------------------------------------------------------------------------


async def test_search_best_match_first(store: SQLiteStore) -> None:
    """Search answers only objects with every term, best match first."""
    await insert(store, "weak", text="core mentioned once in a very long text with switch near the end and many words")
    await insert(store, "strong", text="core switch core switch")
    await insert(store, "middle", text="core switch in the lab")
    await insert(store, "none", text="edge router")
    await insert(store, "half", text="core router")
    items, total = await store.search(C, "", Query(q="core switch"))
    assert [obj["id"] for obj in items] == ["strong", "middle", "weak"]
    assert total == 3


async def test_search_terms(store: SQLiteStore) -> None:
    """Terms match as prefixes, case-insensitively, and FTS syntax in q is only text."""
    await insert(store, "a", text="Firewall-01 in Göteborg")
    for q in ("fire", "FIREWALL", "01", "göte", "fire* OR x", 'fire"', "(fire)", "firewall 01", "-fire", "fire:"):
        items, _ = await store.search(C, "", Query(q=q))
        assert [obj["id"] for obj in items] == (["a"] if "x" not in q else []), q
    assert (await store.search(C, "", Query(q="wall")))[1] == 0


async def test_search_without_terms_lists(store: SQLiteStore, devices: list[dict[str, Any]]) -> None:
    """A q without any word (or none) is a plain query with the filters."""
    for q in (None, "", "*()"):
        items, total = await store.search(C, "", Query(q=q, filters={"site": "lab"}))
        assert ([obj["name"] for obj in items], total) == (["a", "b", "f"], 3)


async def test_search_with_filters_and_paging(store: SQLiteStore) -> None:
    """Search combines terms with exact filters and pages by rank."""
    for i in range(5):
        await insert(store, f"o-{i}", text="core " * (i + 1), site="lab" if i % 2 else "hall")
    items, total = await store.search(C, "", Query(q="core", filters={"site": "hall"}))
    assert [obj["id"] for obj in items] == ["o-4", "o-2", "o-0"]
    assert total == 3
    items, total = await store.search(C, "", Query(q="core", limit=2, offset=1))
    assert [obj["id"] for obj in items] == ["o-3", "o-2"]
    assert total == 5
    assert await store.search(C, "", Query(q="core", limit=2, offset=9)) == ([], 5), "past the end: still the total"
    assert await store.search(C, "", Query(q="core", filters={"site": "nowhere"})) == ([], 0)


async def test_search_follows_patches(store: SQLiteStore) -> None:
    """After a patch, the new text is found and the old is not."""
    await insert(store, "a", text="before")
    await store.patch(C, "", "a", {"text": "after"}, prepare)
    assert (await store.search(C, "", Query(q="before")))[1] == 0
    assert [obj["id"] for obj in (await store.search(C, "", Query(q="after")))[0]] == ["a"]


# -- namespaces and collections -----------------------------------------------------------------


async def test_namespaces_and_collections_are_apart(store: SQLiteStore) -> None:
    """The same id in two namespaces or two collections is separate objects; nothing reads across."""
    a = await insert(store, "same", namespace="a", text="shared alpha")
    b = await insert(store, "same", namespace="b", text="shared beta")
    other = await store.insert("other/collection", "a", {"id": "same", "text": "shared gamma"}, prepare)
    assert await store.get(C, "a", "same") == a
    assert await store.get(C, "b", "same") == b
    assert await store.get("other/collection", "a", "same") == other
    assert await store.get(C, "", "same") is None
    assert (await store.query(C, "a", Query()))[0] == [a]
    assert [o["text"] for o in (await store.search(C, "a", Query(q="shared")))[0]] == ["shared alpha"]
    assert (await store.search(C, "a", Query(q="beta")))[1] == 0
    await store.patch(C, "a", "same", {"text": "changed"}, prepare)
    assert await store.get(C, "b", "same") == b
    await store.delete(C, "b", "same")
    assert (await store.get(C, "a", "same"))["text"] == "changed"  # type: ignore[index]
    assert await store.get("other/collection", "a", "same") == other
    with pytest.raises(DoesNotExist):
        await store.delete(C, "", "same")


# -- waiting for changes ------------------------------------------------------------------------


def _lookers() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "flowbus-change-watcher"]


async def test_many_waiters_share_one_look_at_the_log(store: SQLiteStore, tmp_path: Path) -> None:
    """However many wait for changes, one task looks at the log for other processes' commits;
    all wake when another store on the file commits, and the look stops once nobody waits.
    A commit of this store wakes its waiters too."""
    other = SQLiteStore(tmp_path / "data" / "flowbus.db")
    await other.open()
    try:
        assert _lookers() == []
        since = await store.last_seq()
        waiters = [asyncio.create_task(store.wait_changed(since, 600)) for _ in range(20)]
        await asyncio.sleep(0)  # they all start waiting
        lookers = _lookers()
        assert len(lookers) == 1
        await insert(other, "theirs")
        await asyncio.wait_for(asyncio.gather(*waiters), 30)  # a hang guard, not a speed assertion
        await asyncio.wait_for(lookers[0], 30)  # with nobody waiting, it stops looking
        assert _lookers() == []
        since = await store.last_seq()
        mine = [asyncio.create_task(store.wait_changed(since, 600)) for _ in range(3)]
        await asyncio.sleep(0)
        await insert(store, "mine")
        await asyncio.wait_for(asyncio.gather(*mine), 30)
        assert [c.objectid for c in await store.changes(since)] == ["mine"]
    finally:
        await other.close()


async def test_closing_the_store_ends_every_wait(store: SQLiteStore) -> None:
    """Waits for changes return when the store closes, and its look at the log stops."""
    since = await store.last_seq()
    waiters = [asyncio.create_task(store.wait_changed(since, 600)) for _ in range(3)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert _lookers() == []
