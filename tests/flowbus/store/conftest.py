"""The ``store`` fixture: one opened store of each kind, so that one suite holds every store to
the Store contract: SQLite, SQLite behind the cache, and PostgreSQL where a server answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from flowbus.store import CachedStore, SQLiteStore, Store
from tests.support import POSTGRES, postgres_answers as server_answers

KINDS = ("sqlite", "cached", "postgresql")

Opener = Callable[[], Awaitable[Store]]


def postgres_answers() -> str | None:
    """None when a PostgreSQL server answers at :data:`POSTGRES`, else why not."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed"
    if server_answers(POSTGRES):
        return None
    where = urlsplit(POSTGRES)
    return f"no server answers at {where.hostname}:{where.port or 5432}"


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=KINDS)
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores of one kind on one database (a second call: another process's view of it);
    every store it opened is closed after the test."""
    kind: str = request.param
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if kind == "postgresql" and (why := postgres_answers()) is not None:
        pytest.skip(f"PostgreSQL store not available: {why}")
    opened: list[Store] = []

    async def opener() -> Store:
        store: Store
        if kind == "postgresql":
            from flowbus.store.postgres import PostgresStore

            store = PostgresStore(POSTGRES, schema=schema)
        elif kind == "cached":
            store = CachedStore(SQLiteStore(tmp_path / "flowbus.db"), 1 << 20)
        else:
            store = SQLiteStore(tmp_path / "flowbus.db")
        await store.open()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()
    if kind == "postgresql":
        await _drop_schema(schema)


@pytest.fixture
async def store(open_store: Opener) -> Store:
    """An opened, empty store."""
    return await open_store()
