"""The PostgreSQL write ceiling of ``run.py`` (S4pg): bare asyncpg inserts behind a bare websocket.

Usage: ``python bench/ceiling_asyncpg.py DSN SCHEMA``

The PostgreSQL twin of bench/ceiling_sqlite.py. It serves on 127.0.0.1, on a free port, prints
``ceiling ready ws=ws://127.0.0.1:PORT`` and answers each CREATE the way a bus must when every
answer is a promise that the write is durable: it parses the envelope with orjson, gives the
object an id and timestamps, and inserts its row as one statement committed on its own, through
a pool of 10 connections (the PostgreSQL store's default), answering after the commit.
Concurrent commits share PostgreSQL's WAL flushes, so the ceiling needs no grouping of its own.

It has no validation, authentication, full-text index, change log, routing or task per call
(each connection's messages are answered one after the other). The table (created in SCHEMA,
which must be letters, digits and '_') has the columns of the store's object table less its
search vector. Its ids are UUIDv7, as FlowBus's. Any other method answers ``INVALID_REQUEST``.
It stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from ceiling_ws import run
from uuid_utils import uuid7
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

READY = "ceiling ready"
POOL_SIZE = 10
SCHEMA = """
CREATE SCHEMA IF NOT EXISTS "{s}";
CREATE TABLE IF NOT EXISTS "{s}".objects (
    pos bigserial PRIMARY KEY,
    collection text NOT NULL,
    namespace text NOT NULL,
    id text NOT NULL,
    version bigint NOT NULL,
    body jsonb NOT NULL,
    UNIQUE (collection, namespace, id)
);
"""
INSERT = 'INSERT INTO "{s}".objects (collection, namespace, id, version, body) VALUES ($1, $2, $3, 1, $4::jsonb)'


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def create(pool: asyncpg.Pool, insert: str, raw: bytes) -> bytes:
    """The answer to one envelope: the stored object once committed, or an error envelope."""
    request = orjson.loads(raw)
    requestid = request.get("requestid")
    data = request.get("data")
    if request.get("method") != "CREATE" or not isinstance(data, dict):
        return error("INVALID_REQUEST", "Only CREATE with data is served here", requestid)
    stamp = now()
    stored = {**data, "id": str(uuid7()), "created": stamp, "updated": stamp, "version": 1}
    try:
        await pool.execute(insert, "inventory/device", "", stored["id"], orjson.dumps(stored).decode())
    except Exception as exc:  # the caller gets the error, the server goes on
        return error("INTERNAL_ERROR", str(exc), requestid)
    return orjson.dumps({"status": 0, "success": True, "data": stored, "dataType": "JSON", "requestid": requestid})


def error(code: str, message: str, requestid: Any) -> bytes:
    envelope = {"status": 0, "success": False, "message": message, "errorcode": code, "requestid": requestid}
    return orjson.dumps({**envelope, "dataType": "JSON"})


def make_handler(pool: asyncpg.Pool, insert: str) -> Any:
    async def handler(ws: ServerConnection) -> None:
        try:
            while True:
                raw = await ws.recv(decode=False)
                await ws.send(await create(pool, insert, raw), text=True)
        except ConnectionClosed:
            pass

    return handler


async def serve_until_stopped(dsn: str, schema: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        await pool.execute(SCHEMA.format(s=schema))
        async with serve(make_handler(pool, INSERT.format(s=schema)), "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"{READY} ws=ws://127.0.0.1:{port}", flush=True)
            await stop.wait()
    finally:
        await pool.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sys.argv[2]):
        sys.exit("usage: ceiling_asyncpg.py DSN SCHEMA")
    run(serve_until_stopped(sys.argv[1], sys.argv[2]))
