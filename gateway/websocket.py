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

from flowbus.config import Settings
from flowbus.handshake import TOO_MANY, connection_defaults
from flowbus.session import Calls, Defaults, Session
from gateway.keys import DISPATCHER, SETTINGS, SOCKETS, Sockets

__all__ = ["PATH", "close_sockets", "websocket"]

PATH = "/ws"
_CLOSED = (ConnectionError,)  # what send_frame raises once the connection is going
_TEXT, _BINARY, _PING, _PONG = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG


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
        # Keepalive is the connection's own (_Keeper): aiohttp's heartbeat costs every message a callback.
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
    keeper = _Keeper(ws, transport, settings)
    session = Session(
        request.app[DISPATCHER],
        keeper.send,
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
            if kind is _TEXT or kind is _BINARY:
                answer = session.receive(message.data)
                if answer is not None:  # answered at once: sent by this (the reading) task
                    keeper.pending += 1
                    try:
                        await ws.send_frame(answer, _TEXT)
                    except _CLOSED:
                        pass
                    finally:
                        keeper.pending -= 1
                        keeper.sent += 1
                elif session.full:
                    await session.room()
            elif kind is _PING:
                await ws.pong(message.data)
            elif kind is _PONG:
                keeper.ponged(message.data)
    finally:
        keeper.stop()
        session.cancel()


class _Keeper:
    """Keeps a connection alive and honest, on one periodic timer instead of work per message.

    - Keepalive, as the websocket port: a ping every ``ping_interval`` seconds; a peer that has
      not answered it after ``ping_timeout`` seconds is closed with 1011.
    - Sends: the reading task and the calls' sends count themselves in :attr:`pending` and
      :attr:`sent`; when sends are pending and none ended for ``write_timeout`` seconds (a client
      that stopped reading), the connection is dropped and its calls are cancelled.
    """

    __slots__ = (
        "_loop", "_ping", "_ping_sent", "_ping_timeout", "_ping_interval", "_seen", "_stalled",
        "_tick", "_timer", "_transport", "_write_timeout", "_ws", "pending", "sent",
    )  # fmt: skip

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, settings: Settings) -> None:
        self._ws = ws
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._write_timeout = settings.write_timeout
        self._ping_interval = settings.ping_interval
        self._ping_timeout = settings.ping_timeout
        self._tick = min(settings.write_timeout, settings.ping_interval, settings.ping_timeout) / 4
        self.pending = 0  # sends under way
        self.sent = 0  # sends ended
        self._seen = 0  # ``sent`` at the last tick
        self._stalled = 0.0  # seconds sends have been pending with none ending
        self._ping = b""  # the payload of the ping not answered yet, if any
        self._ping_sent = self._loop.time()  # when the last ping went (or the connection opened)
        self._timer = self._loop.call_later(self._tick, self._check)

    async def send(self, data: bytes) -> None:
        """Send one answer as a text frame."""
        self.pending += 1
        try:
            await self._ws.send_frame(data, _TEXT)
        finally:
            self.pending -= 1
            self.sent += 1

    def ponged(self, data: bytes) -> None:
        """A pong came: it answers the ping it echoes."""
        if self._ping and data == self._ping:
            self._ping = b""

    def stop(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        if self._sends_stalled():
            if self._transport is not None:  # the client stopped reading: drop it, its calls are cancelled
                self._transport.abort()
            return
        now = self._loop.time()
        if self._ping and now - self._ping_sent >= self._ping_timeout:
            self._ping = b""
            self._loop.create_task(self._ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"keepalive ping timeout"))
            return
        if not self._ping and now - self._ping_sent >= self._ping_interval:
            self._ping = str(now).encode()
            self._ping_sent = now
            self._loop.create_task(self._send_ping(self._ping))
        self._timer = self._loop.call_later(self._tick, self._check)

    def _sends_stalled(self) -> bool:
        if self.pending and self.sent == self._seen:
            self._stalled += self._tick
            return self._stalled >= self._write_timeout
        self._seen = self.sent
        self._stalled = 0.0
        return False

    async def _send_ping(self, data: bytes) -> None:
        with contextlib.suppress(*_CLOSED):
            await self._ws.ping(data)


async def close_sockets(sockets: Sockets, grace: float) -> None:
    """Shutdown: let the calls in flight finish (within ``grace``), then close every /ws with 1001."""
    await sockets.calls.finish(grace)
    for ws in list(sockets.open):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"The bus is shutting down")
