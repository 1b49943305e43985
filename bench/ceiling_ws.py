"""The ceiling of ``bench_ws.py``: the least work a websocket JSON bus in Python must do per call.

Usage: ``python bench/ceiling_ws.py OBJECTS.json``

It serves the objects of ``OBJECTS.json`` (a JSON array of objects, each with an ``id``) on
127.0.0.1, on a free port, prints ``ceiling ready ws=ws://127.0.0.1:PORT`` and then answers each
message the way a bus answers OPEN: parse the envelope with orjson, look ``objectid`` up in a dict,
encode the success envelope with orjson, send it. It uses the same library (``websockets``,
compression off) and the same event loop as ``flowbus serve`` (uvloop when it is installed, unless
``FLOWBUS_EVENT_LOOP=asyncio``).

It has no routing, validation, authentication, storage, task per call or timeout, and answers
the messages of a connection one after the other, so no bus built on ``websockets`` in Python can
answer faster: that is what makes it the ceiling. It stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

READY = "ceiling ready"

Handler = Callable[[ServerConnection], Awaitable[None]]


def answer(objects: dict[str, Any], raw: bytes) -> bytes:
    """The answer to one envelope: the object as OPEN answers it, or DO_NOT_EXIST."""
    request = orjson.loads(raw)
    requestid = request.get("requestid")
    found = objects.get(request.get("objectid"))
    if found is None:
        envelope = {
            "status": 0,
            "success": False,
            "message": "Object does not exist",
            "errorcode": "DO_NOT_EXIST",
            "dataType": "JSON",
            "requestid": requestid,
        }
    else:
        envelope = {"status": 0, "success": True, "data": found, "dataType": "JSON", "requestid": requestid}
    return orjson.dumps(envelope)


def make_handler(objects: dict[str, Any]) -> Handler:
    """A connection handler that answers every message in turn until the client goes away."""

    async def handler(ws: ServerConnection) -> None:
        try:
            while True:
                raw = await ws.recv(decode=False)
                await ws.send(answer(objects, raw), text=True)
        except ConnectionClosed:
            pass

    return handler


async def serve_until_stopped(objects: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(make_handler(objects), "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"{READY} ws=ws://127.0.0.1:{port}", flush=True)
        await stop.wait()


def load_objects(path: Path) -> dict[str, Any]:
    return {obj["id"]: obj for obj in orjson.loads(path.read_bytes())}


def run(main: Any) -> None:
    """Run ``main`` on the event loop ``flowbus serve`` would use: uvloop when installed, unless
    ``FLOWBUS_EVENT_LOOP=asyncio`` (as for ``flowbus serve``)."""
    if os.environ.get("FLOWBUS_EVENT_LOOP", "auto") == "asyncio":
        asyncio.run(main)
        return
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ceiling_ws.py OBJECTS.json")
    run(serve_until_stopped(load_objects(Path(sys.argv[1]))))
