"""The websocket port: an asyncio Protocol driving websockets' Sans-I/O ``ServerProtocol``.

Each connection is a :class:`_Connection`. Bytes read go to the protocol; the events it gives
(the handshake request, frames) are acted on; what it has to send is written. The path the
connection was opened on (``/inventory/device``) is the default endpoint of its messages, and a
token given at the handshake (``?token=`` or ``Authorization: Bearer``) their default token (see
:mod:`flowbus.handshake`). How calls are run, limited and shut down is :mod:`flowbus.session`'s,
shared with the gateway's ``/ws``.

Writes: every answer ready when a read has been handled leaves in one ``writelines``; an answer
of a call that waited is written at the end of the event loop's turn that made it (with the other
answers of that turn). While the transport's buffer is full, the connection is not read; if it
stays full for ``write_timeout`` seconds the connection is aborted and its calls cancelled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as HandshakeRequest
from websockets.server import ServerProtocol

from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.handshake import TOO_MANY, Connections, Handshake, connection_defaults
from flowbus.keepalive import Keepalive
from flowbus.session import Calls, Defaults, Session

__all__ = ["CLOSE_TIMEOUT", "WebSocketServer"]

CLOSE_TIMEOUT = 10.0
"""Seconds a closing connection's peer has to end the TCP connection before it is aborted."""

_CLOSED = (InvalidState,)  # what send_text raises once the connection is closing


class WebSocketServer:
    """Serves the bus over websockets.

    Args:
        dispatcher: the bus's dispatcher.
        settings: the bus's settings.
        connections: the cap on open connections, shared with the other websocket entries.
    """

    def __init__(self, dispatcher: Dispatcher, settings: Settings, connections: Connections | None = None) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        self.connections = connections if connections is not None else Connections(settings.max_connections)
        self.handshake = Handshake(settings)
        self.calls = Calls()
        self.open: set[_Connection] = set()
        self.accepting = True
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"ws://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.settings.host, self.settings.ws_port)

    async def stop(self) -> None:
        """Shut down: stop accepting, let in-flight calls finish (within the grace period, the rest
        answer UNAVAILABLE), then close every connection with 1001 (going away)."""
        self.accepting = False
        if self._server is not None:
            self._server.close()
        await self.calls.finish(self.settings.shutdown_grace)
        for connection in list(self.open):
            connection.close(1001, "The bus is shutting down")
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT
        while self.open and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.open):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    """One websocket connection of the websocket port."""

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.protocol = ServerProtocol(max_size=server.settings.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._counted = False
        self._flushing = False
        self._fragments: list[bytes] = []
        self._backlog: deque[str | bytes] = deque()  # messages read while the session was full
        self._fragment_text = True
        self._reading = True
        self._write_blocked = False
        self._closing: asyncio.TimerHandle | None = None  # aborts a close handshake the peer never ends
        self._keepalive: Keepalive | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport (uvloop's is no subclass of asyncio.Transport, only alike).
        self.transport = cast(asyncio.Transport, transport)
        self._counted = self.server.connections.take()  # a handshake in progress counts
        self.server.open.add(self)

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._events()
        self._flush()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._events()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)
        if self._counted:
            self._counted = False
            self.server.connections.release()
        if self._closing is not None:
            self._closing.cancel()
        if self._keepalive is not None:
            self._keepalive.stop()
        self._backlog.clear()
        if self.session is not None:
            self.session.cancel()

    def pause_writing(self) -> None:
        self._write_blocked = True
        self._update_reading()
        if self._keepalive is not None:
            self._keepalive.sending()  # a send is pending until writing resumes

    def resume_writing(self) -> None:
        self._write_blocked = False
        if self._keepalive is not None:
            self._keepalive.sent()
        self._update_reading()

    # the websocket

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake."""
        try:
            self.protocol.send_close(code, reason)
        except InvalidState:
            pass
        self._flush()

    def abort(self) -> None:
        """Drop the connection at once (its calls are cancelled by connection_lost)."""
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes) -> None:
        """Send one answer as a text frame, written with the rest of this turn's."""
        self.protocol.send_text(data)
        if not self._flushing:
            self._flushing = True
            self.loop.call_soon(self._flush)

    def _events(self) -> None:
        for event in self.protocol.events_received():
            if isinstance(event, HandshakeRequest):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)

    def _handshake(self, request: HandshakeRequest) -> None:
        server = self.server
        headers = request.headers
        closing = not server.accepting or server.dispatcher.closing
        refusal = server.handshake.refusal(closing, headers.get("Origin"), headers.get("Host"))
        if refusal is None and not self._counted:
            refusal = TOO_MANY
        if refusal is not None:
            response = self.protocol.reject(refusal.status, refusal.text)
        else:
            response = self.protocol.accept(request)
        if "Server" in response.headers:
            del response.headers["Server"]
        response.headers["Server"] = "FlowBus"
        self.protocol.send_response(response)
        if response.status_code != 101:
            return
        endpoint, token = connection_defaults(request.path, headers)
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        defaults = Defaults(endpoint, token, str(peer[0]) if peer else "")
        self.session = Session(
            server.dispatcher,
            self.send,
            _CLOSED,
            defaults,
            server.settings.max_in_flight,
            server.calls,
            room=self._room,
            backlog=self._unsent,
            limit=server.settings.subscriber_backlog,
            overflow=self._overflowed if server.settings.subscriber_overflow == "close" else None,
        )
        self._keepalive = Keepalive(server.settings, self._ping, self._silent, self.abort)

    def _overflowed(self) -> None:
        """A subscriber that does not read, under the ``close`` policy: drop the connection."""
        self.abort()

    def _unsent(self) -> int:
        """Bytes written to this connection and not sent yet."""
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._fragment_text = opcode is Opcode.TEXT
            if not frame.fin:
                self._fragments = [bytes(frame.data)]
                return
            self._message(bytes(frame.data))
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), []
                self._message(data)
        elif opcode is Opcode.PONG and self._keepalive is not None:
            self._keepalive.ponged(bytes(frame.data))

    def _message(self, data: bytes) -> None:
        if self.session is None:
            return
        message: str | bytes = data
        if self._fragment_text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.protocol.fail(1007, "invalid UTF-8 in a text frame")
                return
        if self._backlog or self.session.full:  # read in the same chunk as calls that filled the session
            self._backlog.append(message)
            return
        self._receive(message)

    def _receive(self, message: str | bytes) -> None:
        session = self.session
        assert session is not None
        answer = session.receive(message)
        if answer is not None:
            self.send(answer)
        elif session.full:
            self._update_reading()

    def _room(self) -> None:
        """A call ended while the session was full: start what waits, then read again."""
        session = self.session
        assert session is not None
        while self._backlog and not session.full:
            self._receive(self._backlog.popleft())
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        want = not self._write_blocked and not self._backlog and not (self.session is not None and self.session.full)
        if want and not self._reading:
            self._reading = True
            transport.resume_reading()
        elif not want and self._reading:
            self._reading = False
            transport.pause_reading()

    def _flush(self) -> None:
        """Write what the protocol has to send, in one go; end or close the connection as it says."""
        self._flushing = False
        transport = self.transport
        if transport is None:
            return
        out = self.protocol.data_to_send()
        if not out:
            return
        eof = b"" in out
        if not transport.is_closing():
            transport.writelines([chunk for chunk in out if chunk] if eof else out)
        if eof:
            transport.close()
        elif self.protocol.close_expected() and self._closing is None:
            self._closing = self.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def _ping(self, data: bytes) -> None:
        try:
            self.protocol.send_ping(data)
        except InvalidState:
            return
        self._flush()

    def _silent(self) -> None:
        self.protocol.fail(1011, "keepalive ping timeout")
        self._flush()
