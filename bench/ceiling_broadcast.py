"""The fan-out ceiling of ``run.py`` (S7): the least a websocket bus in Python must do to tell
many subscribers of a write.

Usage: ``python bench/ceiling_broadcast.py``

It serves on 127.0.0.1, on a free port, and prints ``ceiling ready ws=ws://127.0.0.1:PORT``. A
connection that sends ``{"method": "SUBSCRIBE", ...}`` becomes a subscriber (answered
``{"status": 0, "success": true, "data": {"subscription": "s-1"}}``); a ``CREATE`` is given an id,
encoded once as the event FlowBus would push, sent to every subscriber with
``websockets.broadcast`` and answered. No storage, no rights, no sequence, no bound on a slow
subscriber's queue: no bus built on ``websockets`` in Python can tell its subscribers sooner.
It stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import signal

import orjson
from ceiling_ws import run
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

READY = "ceiling ready"


def make_handler() -> tuple[set[ServerConnection], object]:
    subscribers: set[ServerConnection] = set()
    ids = itertools.count(1)

    async def handler(ws: ServerConnection) -> None:
        try:
            while True:
                request = orjson.loads(await ws.recv(decode=False))
                requestid = request.get("requestid")
                if request.get("method") == "SUBSCRIBE":
                    subscribers.add(ws)
                    answer = {"status": 0, "success": True, "data": {"subscription": "s-1"}, "requestid": requestid}
                else:
                    seq = next(ids)
                    obj = {**(request.get("data") or {}), "id": f"o-{seq}"}
                    event = {
                        "event": "CREATED",
                        "endpoint": request.get("endpoint"),
                        "objectid": obj["id"],
                        "namespace": request.get("namespace", ""),
                        "data": obj,
                        "subscription": "s-1",
                        "seq": seq,
                    }
                    broadcast(subscribers, orjson.dumps(event).decode())
                    answer = {"status": 0, "success": True, "data": obj, "requestid": requestid}
                await ws.send(orjson.dumps(answer), text=True)
        except ConnectionClosed:
            pass
        finally:
            subscribers.discard(ws)

    return subscribers, handler


async def serve_until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _, handler = make_handler()
    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:  # type: ignore[arg-type]
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"{READY} ws=ws://127.0.0.1:{port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    run(serve_until_stopped())
