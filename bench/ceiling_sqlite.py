"""The write ceiling of ``run.py``: bare aiosqlite inserts behind a bare websocket, committed in groups.

Usage: ``python bench/ceiling_sqlite.py DATABASE``

It serves on 127.0.0.1, on a free port, prints ``ceiling ready ws=ws://127.0.0.1:PORT`` and answers
each CREATE the way a bus must when every answer is a promise that the write is durable: it
parses the envelope with orjson, gives the object an id and timestamps, queues its row, and
answers only after the transaction holding that row has committed. The database is a SQLite
file in WAL mode with ``synchronous=FULL`` (FlowBus's default), written through one aiosqlite
connection. Commits are grouped the way FlowBus groups them: while one commit runs, new rows
wait; then everything pending is inserted and committed together, and all those callers are
answered.

It has no validation, authentication, full-text index, savepoint per write, routing or task per
call (each connection's messages are answered one after the other), and the table has only
the columns FlowBus's object table has. Its ids are UUIDv7, as FlowBus's: time-ordered ids land
at the end of the id index (random UUID4s would rewrite a random index page per insert, and
the ceiling would no longer be the least a server must do). Any other method answers ``INVALID_REQUEST``. It
stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
from ceiling_ws import run
from uuid_utils import uuid7
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

READY = "ceiling ready"
# The table of flowbus/store/sqlite/writer.py, without its full-text index: copied rather than imported,
# so that the ceiling stays a bare aiosqlite server that depends on nothing of FlowBus.
SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (collection, namespace, id)
);
"""
INSERT = "INSERT INTO objects (collection, namespace, id, created, updated, body) VALUES (?, ?, ?, ?, ?, ?)"

Row = tuple[str, str, str, str, str, str]


class GroupCommit:
    """Insert rows in groups: one transaction for everything that queued while the last one ran."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.pending: list[tuple[Row, asyncio.Future[None]]] = []
        self.wakeup = asyncio.Event()

    async def insert(self, row: Row) -> None:
        """Return once ``row`` is committed."""
        done = asyncio.get_running_loop().create_future()
        self.pending.append((row, done))
        self.wakeup.set()
        await done

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            batch, self.pending = self.pending, []
            try:
                await self.db.executemany(INSERT, [row for row, _ in batch])
                await self.db.commit()
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def create(commits: GroupCommit, raw: bytes) -> bytes:
    """The answer to one envelope: the stored object once committed, or an error envelope."""
    request = orjson.loads(raw)
    requestid = request.get("requestid")
    data = request.get("data")
    if request.get("method") != "CREATE" or not isinstance(data, dict):
        return error("INVALID_REQUEST", "Only CREATE with data is served here", requestid)
    stamp = now()
    stored = {**data, "id": str(uuid7()), "created": stamp, "updated": stamp}
    row = ("inventory/device", "", stored["id"], stamp, stamp, orjson.dumps(stored).decode())
    try:
        await commits.insert(row)
    except Exception as exc:  # the caller gets the error, the server goes on
        return error("INTERNAL_ERROR", str(exc), requestid)
    return orjson.dumps({"status": 0, "success": True, "data": stored, "dataType": "JSON", "requestid": requestid})


def error(code: str, message: str, requestid: Any) -> bytes:
    envelope = {"status": 0, "success": False, "message": message, "errorcode": code, "requestid": requestid}
    return orjson.dumps({**envelope, "dataType": "JSON"})


def make_handler(commits: GroupCommit) -> Any:
    async def handler(ws: ServerConnection) -> None:
        try:
            while True:
                raw = await ws.recv(decode=False)
                await ws.send(await create(commits, raw), text=True)
        except ConnectionClosed:
            pass

    return handler


async def open_database(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    await db.executescript(SCHEMA)
    return db


async def serve_until_stopped(path: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    db = await open_database(path)
    commits = GroupCommit(db)
    committer = asyncio.create_task(commits.run())
    try:
        async with serve(make_handler(commits), "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(f"{READY} ws=ws://127.0.0.1:{port}", flush=True)
            await stop.wait()
    finally:
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        await db.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ceiling_sqlite.py DATABASE")
    run(serve_until_stopped(Path(sys.argv[1])))
