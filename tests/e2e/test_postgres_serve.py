"""``flowbus serve --store postgresql://...`` serves objects kept in PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import POSTGRES, ROOT, http_json, postgres_answers, serving

DSN = POSTGRES


if not postgres_answers(DSN):
    pytest.skip(f"no PostgreSQL server answers at {DSN}", allow_module_level=True)

asyncpg = pytest.importorskip("asyncpg")


def _get(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """GET a URL (an OPEN) and return the JSON answer."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        answer: dict[str, Any] = orjson.loads(response.read())
    return answer


async def _rows_in(schema: str) -> int:
    conn = await asyncpg.connect(DSN)
    try:
        count: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}".objects')
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()
    return count


def test_serve_with_a_postgresql_store_creates_and_opens_over_http(tmp_path: Path) -> None:
    """CREATE then OPEN over HTTP on a bus serving from PostgreSQL; the object is a row of the schema."""
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    try:
        with serving(tmp_path, "--store", f"{DSN}?schema={schema}") as bus:
            headers = {"Authorization": f"Bearer {bus.token}"}
            devices = bus.http_url + "/api/inventory/inventory/device/"
            created = http_json(devices, {"name": "core-sw"}, headers)
            assert created["success"] is True, created
            objectid = created["data"]["id"]
            opened = _get(devices + objectid, headers)
            assert opened["success"] is True, opened
            assert opened["data"]["name"] == "core-sw" and opened["data"]["id"] == objectid
    finally:
        rows = asyncio.run(_rows_in(schema))
    assert rows >= 2  # the device and the admin user made on first start


def test_user_add_with_flowbus_store_writes_the_postgresql_store(tmp_path: Path) -> None:
    """`flowbus user add` with FLOWBUS_STORE set adds the user to PostgreSQL: a bus on that store logs them in."""
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    store = f"{DSN}?schema={schema}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWBUS_STORE": store, "FLOWBUS_PASSWORD": "bob-password-1234"}
    command = [sys.executable, "-m", "flowbus", "user", "add", "bob", "--data", str(tmp_path / "data")]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        with serving(tmp_path, "--store", store) as bus:
            answer = bus.login("bob", "bob-password-1234")
            assert answer["success"] is True, answer
    finally:
        asyncio.run(_rows_in(schema))
