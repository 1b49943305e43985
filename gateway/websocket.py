"""The websocket entry of the gateway port: ``/ws`` speaks exactly what the websocket port does.

A deployment can so serve everything on one port. The connection's path after ``/ws`` is its
default endpoint (``/ws/inventory/device``), a token given at the handshake (``?token=`` or
``Authorization: Bearer``) the default token of its messages, as on the websocket port; the
calls themselves run through the same :class:`~flowbus.session.Session`.
"""

from __future__ import annotations

from functools import partial

from aiohttp import WSCloseCode, WSMsgType, web

from flowbus.server import connection_defaults, origin_allowed
from flowbus.session import Calls, Defaults, Session
from gateway.keys import DISPATCHER, SETTINGS, SOCKETS, Sockets

__all__ = ["PATH", "close_sockets", "websocket"]

PATH = "/ws"
PING_INTERVAL = 20.0  # as the websocket port: a ping every 20 s, the peer must answer in 10 s
_CLOSED = (ConnectionError,)  # what send_frame raises once the connection is going


async def websocket(request: web.Request) -> web.StreamResponse:
    """Accept a websocket on ``/ws[/<endpoint>]`` and answer its envelopes until it closes."""
    sockets = request.app[SOCKETS]
    settings = request.app[SETTINGS]
    refusal = _refusal(request, sockets)
    if refusal is not None:
        return refusal
    # aiohttp refuses a message of max_msg_size bytes or more; the bus's limit is "at most".
    limit = settings.max_message_size + 1
    ws = web.WebSocketResponse(max_msg_size=limit, compress=False, heartbeat=PING_INTERVAL, autoping=True)
    sockets.open.add(ws)  # before the handshake's await, so that racing handshakes see it
    try:
        await ws.prepare(request)
        await _serve(request, ws, sockets.calls)
    finally:
        sockets.open.discard(ws)
    return ws


def _refusal(request: web.Request, sockets: Sockets) -> web.Response | None:
    """The answer to a handshake that must not open (the same rules as the websocket port)."""
    settings = request.app[SETTINGS]
    if request.app[DISPATCHER].closing:
        return web.Response(status=503, text="The bus is shutting down\n")
    if len(sockets.open) >= settings.max_connections:
        return web.Response(status=503, text="Too many connections\n")
    if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), settings):
        return web.Response(status=403, text="Origin not allowed\n")
    return None


async def _serve(request: web.Request, ws: web.WebSocketResponse, calls: Calls) -> None:
    endpoint, token = connection_defaults(request.raw_path[len(PATH) :], request.headers)
    defaults = Defaults(endpoint, token, request.remote or "")
    send = partial(ws.send_frame, opcode=WSMsgType.TEXT)
    limit = request.app[SETTINGS].max_in_flight
    session = Session(request.app[DISPATCHER], send, _CLOSED, defaults, limit, calls)
    async for message in ws:
        if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
            if session.start(message.data):
                await session.room()


async def close_sockets(sockets: Sockets, grace: float) -> None:
    """Shutdown: let the calls in flight finish (within ``grace``), then close every /ws with 1001."""
    await sockets.calls.finish(grace)
    for ws in list(sockets.open):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"The bus is shutting down")
