"""What is PostgreSQL's own in the PostgreSQL store: its schema, commit-ordered seqs under
concurrent transactions from several pools, LISTEN wakeups across store instances, and how it
answers when the server cannot be reached. The Store contract itself is tested for every store
alike elsewhere."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

asyncpg = pytest.importorskip("asyncpg")

from flowbus.config import Settings  # noqa: E402
from flowbus.errors import Conflict, Unavailable  # noqa: E402
from flowbus.params import Query  # noqa: E402
from flowbus.store import CachedStore, SQLiteStore, create_store  # noqa: E402
from flowbus.store.base import Insert  # noqa: E402
from flowbus.store.postgres import PostgresStore  # noqa: E402
from tests.support import POSTGRES, postgres_answers  # noqa: E402

DSN = POSTGRES


if not postgres_answers(DSN):
    pytest.skip(f"no PostgreSQL server answers at {DSN}", allow_module_level=True)


def text_of(obj: dict[str, Any]) -> str:
    """A prepare that takes every object and indexes its values."""
    return " ".join(str(value) for value in obj.values())


async def drop(schema: str) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh schema name, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    await drop(name)


@pytest.fixture
async def opened(schema: str) -> AsyncIterator[Callable[..., Any]]:
    """Opens stores on the test's schema and closes them after the test."""
    stores: list[PostgresStore] = []

    async def open_store(**kwargs: Any) -> PostgresStore:
        store = PostgresStore(DSN, schema=schema, **kwargs)
        await store.open()
        stores.append(store)
        return store

    yield open_store
    for store in stores:
        await store.close()


async def test_open_creates_the_schema_and_its_tables(opened, schema):
    """open() creates the schema with its objects and changes tables, and a GIN index for search."""
    await opened()
    conn = await asyncpg.connect(DSN)
    try:
        tables = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
        indexes = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = $1", schema)
    finally:
        await conn.close()
    assert {"objects", "changes"} <= {row[0] for row in tables}
    assert any("gin" in row[0].lower() and "search" in row[0] for row in indexes)


async def test_reopening_keeps_objects_and_seqs(opened, schema):
    """A second open() of the same schema finds the objects and the change log of the first."""
    first = await opened()
    await first.insert("c", "", {"id": "a", "n": 1}, text_of)
    await first.close()
    second = await opened()
    assert (await second.get("c", "", "a"))["n"] == 1
    assert [change.objectid for change in await second.changes(0)] == ["a"]


async def test_seqs_follow_commit_order_across_pools(opened):
    """Concurrent writes through two stores (two pools) give seqs that a tailer never sees out of order."""
    one, two = await opened(), await opened()
    seen: list[int] = []
    stop = asyncio.Event()

    async def tail() -> None:
        last = 0
        while not stop.is_set():
            for change in await one.changes(last):
                assert change.seq > last  # a change committed late with a smaller seq would be skipped
                seen.append(change.seq)
                last = change.seq
            await one.wait_changed(last, 0.05)

    async def write(store: PostgresStore, prefix: str) -> None:
        for i in range(100):
            await asyncio.gather(*(store.insert("c", "", {"id": f"{prefix}{i}-{j}"}, text_of) for j in range(3)))
            await store.transaction([Insert("c", "", {"id": f"{prefix}{i}-t"}, text_of)])

    tailer = asyncio.create_task(tail())
    await asyncio.gather(write(one, "a"), write(two, "b"))
    last = await one.last_seq()
    deadline = asyncio.get_running_loop().time() + 30
    while (not seen or seen[-1] < last) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await tailer
    assert len(seen) == 2 * 100 * 4
    assert seen == sorted(seen)


async def test_wait_changed_wakes_on_another_store_commit(opened):
    """wait_changed on one store returns soon after another store (another pool) commits."""
    waiter, writer = await opened(), await opened()
    since = await waiter.last_seq()
    waiting = asyncio.create_task(waiter.wait_changed(since, 60))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await writer.insert("c", "", {"id": "x"}, text_of)
    await asyncio.wait_for(waiting, 30)  # far below the 60 s the wait would last without a wakeup
    assert await waiter.last_seq() > since


async def test_concurrent_inserts_of_one_id_make_one_object(opened):
    """Many concurrent inserts of one id through two stores: exactly one succeeds, the others are CONFLICT."""
    one, two = await opened(), await opened()
    attempts = [store.insert("c", "", {"id": "same", "by": i}, text_of) for i in range(10) for store in (one, two)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(isinstance(result, dict) for result in results) == 1
    assert all(isinstance(result, Conflict) for result in results if not isinstance(result, dict))
    assert len(await one.changes(0)) == 1


async def test_concurrent_patches_all_land(opened):
    """Concurrent patches without expect through two stores each add one version (the store retries)."""
    one, two = await opened(), await opened()
    await one.insert("c", "", {"id": "p", "n": 0}, text_of)
    writes = [store.patch("c", "", "p", {f"f{i}": i}, text_of) for i in range(4) for store in (one, two)]
    await asyncio.gather(*writes)
    final = await one.get("c", "", "p")
    assert final["version"] == 9
    assert all(f"f{i}" in final for i in range(4))


async def test_unreachable_server_is_unavailable(schema):
    """open() on a server that does not answer raises UNAVAILABLE, naming no password."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = PostgresStore(f"postgresql://postgres:secret@127.0.0.1:{port}/test", schema=schema)
    with pytest.raises(Unavailable) as caught:
        await store.open()
    assert "secret" not in str(caught.value)
    await store.close()


async def test_closed_store_is_unavailable(opened):
    """Calls on a closed store raise UNAVAILABLE instead of hanging."""
    store = await opened()
    await store.close()
    with pytest.raises(Unavailable):
        await store.insert("c", "", {"id": "late"}, text_of)
    with pytest.raises(Unavailable):
        await store.get("c", "", "late")


async def test_create_store_picks_the_store_from_settings(tmp_path, schema):
    """create_store: empty is SQLite in the data dir; a postgresql:// URL with ?schema= is PostgreSQL there."""
    embedded = create_store(Settings(data=tmp_path))
    assert isinstance(embedded, CachedStore) and isinstance(embedded.inner, SQLiteStore)
    cached = create_store(Settings(data=tmp_path, store=f"{DSN}?schema={schema}"))
    assert isinstance(cached, CachedStore)
    store = cached.inner
    assert isinstance(store, PostgresStore) and store.schema == schema and "schema" not in store.dsn


def test_other_store_urls_are_refused():
    """A store setting that is neither empty nor a postgresql:// URL is refused when settings load."""
    with pytest.raises(ValueError, match="postgresql://"):
        Settings.load({"store": "mysql://localhost/db"}, env={})


async def test_wait_changed_listens_again_after_losing_its_connection(opened):
    """When the server ends a store's listening connection, wait_changed reconnects and still wakes."""
    waiter, writer = await opened(), await opened()
    conn = await asyncpg.connect(DSN)
    try:
        pid = waiter._listener.get_server_pid()
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    deadline = asyncio.get_running_loop().time() + 30
    while not waiter._listener.is_closed() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    since = await waiter.last_seq()
    waiting = asyncio.create_task(waiter.wait_changed(since, 60))
    await asyncio.sleep(0.2)
    await writer.insert("c", "", {"id": "after"}, text_of)
    await asyncio.wait_for(waiting, 30)  # far below the 60 s the wait would last without a wakeup
    assert waiter._listener.get_server_pid() != pid


async def test_a_wait_whose_listening_connection_is_lost_listens_again(opened):
    """The listening connection lost while wait_changed waits (a long while) wakes it: it
    listens again on a new connection, and wakes for a commit made after (or while) it was lost."""
    waiter, writer = await opened(), await opened()
    since = await waiter.last_seq()
    waiting = asyncio.create_task(waiter.wait_changed(since, 600))
    await asyncio.sleep(0.05)
    pid = waiter._listener.get_server_pid()
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    await writer.insert("c", "", {"id": "after"}, text_of)
    await asyncio.wait_for(waiting, 30)  # a hang guard: without a wakeup it would wait 600 s
    assert waiter._listener.get_server_pid() != pid
    assert [c.objectid for c in await waiter.changes(since)] == ["after"]


async def test_many_concurrent_patches_of_one_object_in_one_store_all_land(opened):
    """Fifty concurrent patches of one object through one store all succeed, one version each."""
    store = await opened()
    await store.insert("c", "", {"id": "hot"}, text_of)
    await asyncio.gather(*(store.patch("c", "", "hot", {f"f{i}": i}, text_of) for i in range(50)))
    final = await store.get("c", "", "hot")
    assert final["version"] == 51 and all(final[f"f{i}"] == i for i in range(50))


async def test_missing_database_is_unavailable_with_the_servers_reason(schema):
    """open() on a database that does not exist raises UNAVAILABLE saying so."""
    missing = urlsplit(DSN)._replace(path=f"/no_such_db_{uuid.uuid4().hex[:8]}").geturl()
    store = PostgresStore(missing, schema=schema)
    with pytest.raises(Unavailable, match="does not exist"):
        await store.open()
    await store.close()


async def test_filters_read_query_strings_as_sqlite_does(opened):
    """Filters on jsonb: '22' matches 22 and 22.0, 'true' matches true, None matches missing or null."""
    store = await opened()
    await store.insert("c", "", {"id": "a", "n": 22, "on": True}, text_of)
    await store.insert("c", "", {"id": "b", "n": 22.0, "on": None}, text_of)
    await store.insert("c", "", {"id": "c", "n": "22"}, text_of)

    async def ids(**filters: Any) -> list[str]:
        page, total = await store.query("c", "", Query(filters=filters))
        assert total == len(page)
        return [obj["id"] for obj in page]

    assert await ids(n="22") == ["a", "b", "c"]
    assert await ids(n=22) == ["a", "b"]
    assert await ids(on="true") == ["a"]
    assert await ids(on=None) == ["b", "c"]


async def test_search_matches_every_term_as_a_prefix_and_ranks(opened):
    """search: every word of q must match as a prefix; operators in q are plain text, never syntax."""
    store = await opened()
    await store.insert("c", "", {"id": "a", "name": "core switch"}, text_of)
    await store.insert("c", "", {"id": "b", "name": "core router"}, text_of)
    page, total = await store.search("c", "", Query(q="co swi"))
    assert ([obj["id"] for obj in page], total) == (["a"], 1)
    page, total = await store.search("c", "", Query(q="core & !switch | ('"))
    assert total == 1 and page[0]["id"] == "a"


async def test_page_stops_after_the_object_that_passes_max_bytes(opened):
    """A page stops after the object whose JSON passes max_bytes; the first always comes; total counts all."""
    store = await opened()
    for i in range(5):
        await store.insert("c", "", {"id": f"o{i}", "pad": "x" * 100}, text_of)
    page, total = await store.query("c", "", Query(max_bytes=250))
    assert (len(page), total) == (2, 5)
    page, total = await store.query("c", "", Query(max_bytes=1))
    assert (len(page), total) == (1, 5)
