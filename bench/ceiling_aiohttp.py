"""The aiohttp ceilings of ``run.py``: the least an aiohttp server must do per call, websocket and HTTP.

Usage: ``python bench/ceiling_aiohttp.py OBJECTS.json``

It serves the objects of ``OBJECTS.json`` (a JSON array of objects, each with an ``id``) on
127.0.0.1, on a free port, prints ``ceiling ready ws=ws://127.0.0.1:PORT/ws http=http://127.0.0.1:PORT``
and answers

- websocket messages on ``/ws`` (``WebSocketResponse``, compression off) the way a bus answers
  OPEN, one after the other: ``orjson.loads``, one dict lookup by ``objectid``, ``orjson.dumps`` of
  the success envelope, send it as a text frame;
- ``GET /api/inventory/inventory/device/{id}`` with the same success envelope (without
  ``requestid``), as JSON, or 404 and the ``DO_NOT_EXIST`` envelope.

This is what FlowBus's HTTP gateway port is built on (aiohttp, no access log, the same event
loop), with nothing of a bus: no routing beyond aiohttp's, no authentication, no storage, no
task per call. It stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from ceiling_ws import answer, load_objects, run

READY = "ceiling ready"
OBJECTS = web.AppKey("objects", dict)
MISSING = {
    "status": 0,
    "success": False,
    "message": "Object does not exist",
    "errorcode": "DO_NOT_EXIST",
    "dataType": "JSON",
}


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Answer every text message in turn until the client goes away."""
    ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    objects = request.app[OBJECTS]
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(answer(objects, message.data).decode())
    return ws


async def open_device(request: web.Request) -> web.Response:
    """OPEN over HTTP: the object in the success envelope, or 404."""
    found = request.app[OBJECTS].get(request.match_info["id"])
    if found is None:
        return web.Response(status=404, body=orjson.dumps(MISSING), content_type="application/json")
    envelope = {"status": 0, "success": True, "data": found, "dataType": "JSON"}
    return web.Response(body=orjson.dumps(envelope), content_type="application/json")


def make_app(objects: dict[str, Any]) -> web.Application:
    app = web.Application()
    app[OBJECTS] = objects
    app.router.add_get("/ws", websocket)
    app.router.add_get("/api/inventory/inventory/device/{id}", open_device)
    return app


async def serve_until_stopped(objects: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(objects), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"{READY} ws=ws://127.0.0.1:{port}/ws http=http://127.0.0.1:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ceiling_aiohttp.py OBJECTS.json")
    run(serve_until_stopped(load_objects(Path(sys.argv[1]))))
