"""Whole-system fixtures: two served processes sharing one store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import POSTGRES, Served, postgres_answers, serve


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    """Two processes sharing one store: a SQLite data directory, or a fresh PostgreSQL schema."""
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    if request.param == "postgresql":
        if not postgres_answers(POSTGRES):
            pytest.skip(f"no PostgreSQL server answers at {POSTGRES}")
        args: tuple[str, ...] = ("--store", f"{POSTGRES}?schema={schema}")
    else:
        args = ()
    first = serve(tmp_path / "a", *args)
    try:
        second = serve(tmp_path / "b", *(args or ("--data", str(first.data))))
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()
        if request.param == "postgresql":
            asyncio.run(_drop(schema))


async def _drop(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
