"""The websocket entry of the gateway port: ``/ws`` speaks exactly what the websocket port does.

A deployment can so serve everything on one port. The connection's path after ``/ws`` is its
default endpoint (``/ws/inventory/device``), a token given at the handshake (``?token=`` or
``Authorization: Bearer``) the default token of its messages, as on the websocket port: the
handshake is judged by the same :class:`~flowbus.handshake.Handshake`, counted against the same
:class:`~flowbus.handshake.Connections`, and the calls run through the same
:class:`~flowbus.session.Session`. A send that stays blocked for ``write_timeout`` seconds (a
client that stopped reading) aborts the connection; keepalive pings go every ``ping_interval``
seconds, and a peer silent for ``ping_timeout`` after one is closed with 1011, as on the port.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSCloseCode, WSMsgType, web

from flowbus.handshake import TOO_MANY, connection_defaults
from flowbus.keepalive import Keepalive
from flowbus.session import Calls, Defaults, Session
from gateway.keys import DISPATCHER, SETTINGS, SOCKETS, Sockets

__all__ = ["PATH", "close_sockets", "websocket"]

PATH = "/ws"
_CLOSED = (ConnectionError,)  # what send_frame raises once the connection is going


async def websocket(request: web.Request) -> web.StreamResponse:
    """Accept a websocket on ``/ws[/<endpoint>]`` and answer its envelopes until it closes."""
    sockets = request.app[SOCKETS]
    settings = request.app[SETTINGS]
    closing = request.app[DISPATCHER].closing
    refusal = sockets.handshake.refusal(closing, request.headers.get("Origin"), request.headers.get("Host"))
    if refusal is not None:
        return web.Response(status=refusal.status, text=refusal.text)
    if not sockets.connections.take():  # the handshake in progress counts
        return web.Response(status=TOO_MANY.status, text=TOO_MANY.text)
    try:
        # aiohttp refuses a message of max_msg_size bytes or more; the bus's limit is "at most".
        limit = settings.max_message_size + 1
        # Keepalive is the connection's own (flowbus.keepalive): aiohttp's heartbeat costs every message a callback.
        ws = web.WebSocketResponse(max_msg_size=limit, compress=False, autoping=False)
        sockets.open.add(ws)
        try:
            await ws.prepare(request)
            await _serve(request, ws, sockets.calls)
        finally:
            sockets.open.discard(ws)
    finally:
        sockets.connections.release()
    return ws


async def _serve(request: web.Request, ws: web.WebSocketResponse, calls: Calls) -> None:
    endpoint, token = connection_defaults(request.raw_path[len(PATH) :], request.headers)
    defaults = Defaults(endpoint, token, request.remote or "")
    settings = request.app[SETTINGS]
    transport = request.transport
    loop = asyncio.get_running_loop()

    def ping(data: bytes) -> None:
        loop.create_task(_ping(ws, data))

    def silent() -> None:
        loop.create_task(ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"keepalive ping timeout"))

    def stalled() -> None:
        if transport is not None:
            transport.abort()

    keeper = Keepalive(settings, ping, silent, stalled)

    async def send(data: bytes) -> None:
        keeper.sending()
        try:
            await ws.send_frame(data, WSMsgType.TEXT)
        finally:
            keeper.sent()

    session = Session(
        request.app[DISPATCHER],
        send,
        _CLOSED,
        defaults,
        settings.max_in_flight,
        calls,
        backlog=(lambda: transport.get_write_buffer_size() if transport is not None else 0),
        limit=settings.subscriber_backlog,
        overflow=(transport.abort if transport is not None and settings.subscriber_overflow == "close" else None),
    )
    try:
        async for message in ws:
            kind = message.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                answer = session.receive(message.data)
                if answer is not None:  # answered at once: sent by this (the reading) task
                    keeper.pending += 1  # as send() counts, without a coroutine of its own per answer
                    try:
                        await ws.send_frame(answer, WSMsgType.TEXT)
                    except _CLOSED:
                        pass
                    finally:
                        keeper.pending -= 1
                        keeper.done += 1
                if session.full:
                    await session.room()
            elif kind is WSMsgType.PING:
                await ws.pong(message.data)
            elif kind is WSMsgType.PONG:
                keeper.ponged(message.data)
    finally:
        keeper.stop()
        session.cancel()


async def _ping(ws: web.WebSocketResponse, data: bytes) -> None:
    with contextlib.suppress(*_CLOSED):
        await ws.ping(data)


async def close_sockets(sockets: Sockets, grace: float) -> None:
    """Shutdown: end the event streams, let the calls in flight finish (within ``grace``), then
    close every /ws with 1001."""
    for stream in list(sockets.streams):
        stream.set()
    await sockets.calls.finish(grace)
    for ws in list(sockets.open):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"The bus is shutting down")
