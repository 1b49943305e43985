"""The websocket server: reads envelopes and hands each to the connection's Session.

The path the connection was opened on (``/inventory/device``) is the default endpoint of its
messages, and a token given at the handshake (``?token=`` or ``Authorization: Bearer``) their
default token. How calls are run, limited and shut down is :mod:`flowbus.session`'s, shared with
the gateway's ``/ws``.
"""

from __future__ import annotations

import logging
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HandshakeRequest, Response as HandshakeResponse

from flowbus.coalesce import CoalescingTransport
from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.hosts import REFUSED as HOST_REFUSED, HostCheck
from flowbus.protocol import normalize_endpoint
from flowbus.session import Calls, Defaults, Session

__all__ = ["WebSocketServer", "connection_defaults", "origin_allowed"]

logger = logging.getLogger("flowbus.server")


def connection_defaults(path: str, headers: Any) -> tuple[str | None, str | None]:
    """Read the default endpoint and token of a connection from its handshake.

    Args:
        path: the request target, e.g. ``/inventory/device?token=...``.
        headers: the handshake headers (anything with ``.get``).

    Returns:
        (endpoint or None, token or None)
    """
    parts = urlsplit(path)
    endpoint = normalize_endpoint(unquote(parts.path)) or None
    token = dict(parse_qsl(parts.query)).get("token")
    auth = headers.get("Authorization") or ""
    if not token and auth[:7].lower() == "bearer ":
        token = auth[7:].strip() or None
    return endpoint, token


def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """Whether a handshake's ``Origin`` may open a websocket (stops cross-site websocket hijacking).

    No Origin (a client that is not a browser) is allowed; a browser's Origin must be the bus's
    own host or be listed in ``settings.allowed_origins`` (``*`` allows every origin).
    """
    if origin is None:
        return True
    if origin in settings.allowed_origins or "*" in settings.allowed_origins:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


class WebSocketServer:
    """Serves the bus over websockets."""

    def __init__(self, dispatcher: Dispatcher, settings: Settings) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        self._server: Server | None = None
        self._calls = Calls()
        self._connections: set[ServerConnection] = set()
        self._accepting = True
        self._hosts = HostCheck(settings.allowed_hosts, settings.host) if settings.no_auth else None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"ws://{_url_host(self.settings.host)}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._serve_connection,
            self.settings.host,
            self.settings.ws_port,
            max_size=self.settings.max_message_size,
            compression=None,
            process_request=self._check_handshake,
            server_header="FlowBus",
        )

    def _check_handshake(self, connection: ServerConnection, request: HandshakeRequest) -> HandshakeResponse | None:
        if not self._accepting:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "The bus is shutting down\n")
        if len(self._connections) >= self.settings.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections\n")
        if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), self.settings):
            return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
        if self._hosts is not None and not self._hosts(request.headers.get("Host")):
            return connection.respond(HTTPStatus.FORBIDDEN, HOST_REFUSED + "\n")
        return None

    async def _serve_connection(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        # The answers of a burst leave together (the handshake is written by now).
        ws.transport = transport = CoalescingTransport(ws.transport)  # type: ignore[assignment]
        endpoint, token = connection_defaults(ws.request.path, ws.request.headers)
        defaults = Defaults(endpoint, token, _peer(ws))
        send = partial(ws.send, text=True)
        limit = self.settings.max_in_flight
        session = Session(self.dispatcher, send, (ConnectionClosed,), defaults, limit, self._calls)
        self._connections.add(ws)
        try:
            while True:  # recv() directly: `async for` adds an async generator step per message
                message = await ws.recv()
                transport.hold()  # answers given at once leave with the rest of this turn's
                if session.start(message):  # this one has to wait: its answer need not be held
                    transport.unhold()
                    await session.room()
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)

    async def stop(self) -> None:
        """Shut down: refuse new calls, let in-flight calls finish (within the grace period),
        answer the rest UNAVAILABLE, then close every connection with 1001 (going away)."""
        self._accepting = False
        self.dispatcher.closing = True
        await self._calls.finish(self.settings.shutdown_grace)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if address else ""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
