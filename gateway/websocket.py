"""The websocket entry of the gateway port: ``/ws`` speaks exactly what the websocket port does.

A deployment can so serve everything on one port. The connection's path after ``/ws`` is its
default endpoint (``/ws/inventory/device``), a token given at the handshake (``?token=`` or
``Authorization: Bearer``) the default token of its messages, as on the websocket port: the
handshake is judged by the same :class:`~flowbus.handshake.Handshake`, counted against the same
:class:`~flowbus.handshake.Connections`, and the calls run through the same
:class:`~flowbus.session.Session`. A send that stays blocked for ``write_timeout`` seconds (a
client that stopped reading) aborts the connection.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSCloseCode, WSMsgType, web

from flowbus.handshake import TOO_MANY, connection_defaults
from flowbus.session import Calls, Defaults, Session
from gateway.keys import DISPATCHER, SETTINGS, SOCKETS, Sockets

__all__ = ["PATH", "close_sockets", "websocket"]

PATH = "/ws"
PING_INTERVAL = 20.0  # as the websocket port: a ping every 20 s
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
        ws = web.WebSocketResponse(max_msg_size=limit, compress=False, heartbeat=PING_INTERVAL, autoping=True)
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
    watchdog = _Watchdog(ws, request.transport, settings.write_timeout)
    send = watchdog.send
    transport = request.transport
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
            if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
                answer = session.take(message.data)
                if answer is not None:  # answered at once: sent by this (the reading) task
                    watchdog.sending()
                    try:
                        await ws.send_frame(answer, WSMsgType.TEXT)
                    except _CLOSED:
                        pass
                    finally:
                        watchdog.sent()
                elif session.full:
                    await session.room()
    finally:
        watchdog.stop()
        session.cancel()


class _Watchdog:
    """Sends answers; aborts the connection when its sends make no progress for ``seconds``.

    One periodic check per connection instead of a timer per send: a send only notes the time
    when the first of its kind starts waiting and when one ends.
    """

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, seconds: float) -> None:
        self._ws = ws
        self._transport = transport
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._pending = 0
        self._progress = 0.0
        self._timer = self._loop.call_later(seconds / 4, self._check)

    async def send(self, data: bytes) -> None:
        """Send one answer as a text frame."""
        self.sending()
        try:
            await self._ws.send_frame(data, WSMsgType.TEXT)
        finally:
            self.sent()

    def sending(self) -> None:
        """A send starts (it may wait while the client does not read)."""
        if self._pending == 0:
            self._progress = self._loop.time()
        self._pending += 1

    def sent(self) -> None:
        """A send ended."""
        self._pending -= 1
        self._progress = self._loop.time()

    def stop(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        if self._pending and self._loop.time() - self._progress > self._seconds:
            if self._transport is not None:  # the client stopped reading: drop it, its calls are cancelled
                self._transport.abort()
            return
        self._timer = self._loop.call_later(self._seconds / 4, self._check)


async def close_sockets(sockets: Sockets, grace: float) -> None:
    """Shutdown: let the calls in flight finish (within ``grace``), then close every /ws with 1001."""
    await sockets.calls.finish(grace)
    for ws in list(sockets.open):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"The bus is shutting down")
