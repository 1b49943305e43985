"""The calls of one websocket connection, whichever library carries it.

Both websocket entries (the bus's own websocket server and the gateway's ``/ws``) hand each
message to :meth:`Session.receive`. A message that does not parse is answered at once, and so is
an OPEN that the pipeline's fast path answers (:meth:`Dispatcher.answer_now`). Every other call
goes through :meth:`Dispatcher.handle` in a task of its own (eager on Python 3.12+, see
:mod:`flowbus.tasks`), with a :class:`~flowbus.endpoint.Sink` for its interim answers and the
connection's subscriptions. Up to ``max_in_flight`` calls may
run at once; past that the transport stops reading the connection until one ends (the client feels TCP backpressure;
nothing is buffered without bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flowbus.answers import encode, failure
from flowbus.auth.base import Credentials
from flowbus.dispatcher import Dispatcher
from flowbus.errors import FlowBusError, InvalidRequest, Unavailable
from flowbus.protocol import Request, Response, parse_request
from flowbus.subscriptions import DEFAULT_BACKLOG, Subscriber

__all__ = ["BINARY", "Calls", "Defaults", "Session"]


def _nothing_unsent() -> int:
    return 0


BINARY = "Binary frames are not accepted: send each envelope as a JSON text frame"

Send = Callable[[bytes], Awaitable[None] | None]
"""Sends one answer as a text frame: at once (returns None) or awaitable."""


@dataclass(slots=True, frozen=True)
class Defaults:
    """What a connection's handshake said of all its messages."""

    endpoint: str | None
    token: str | None
    peer: str

    @property
    def credentials(self) -> Credentials:
        return Credentials(token=self.token, peer=self.peer)


class Calls:
    """The running calls of one transport's connections, so that shutdown can let them finish."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    async def finish(self, grace: float) -> None:
        """Give the calls in flight ``grace`` seconds, then cancel the rest (they answer UNAVAILABLE)."""
        if not self.tasks:
            return
        _, late = await asyncio.wait(set(self.tasks), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


class Session:
    """Answers the messages of one connection.

    Args:
        dispatcher: the bus's dispatcher.
        send: sends one answer as a text frame.
        closed: what ``send`` raises once the connection is gone.
        defaults: the connection's default endpoint and token, and the peer's address.
        max_in_flight: calls that may run at once.
        calls: where the transport keeps track of running calls.
        room: called whenever a call ends while the session was full (to read again).
        backlog: the connection's bytes written but not sent yet (for subscriptions' bound).
        limit: unsent bytes past which the connection's subscriptions end with OVERFLOW.
        overflow: given, what closes the connection instead (``subscriber_overflow = close``).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        send: Send,
        closed: tuple[type[BaseException], ...],
        defaults: Defaults,
        max_in_flight: int,
        calls: Calls,
        room: Callable[[], None] | None = None,
        backlog: Callable[[], int] | None = None,
        limit: int = DEFAULT_BACKLOG,
        overflow: Callable[[], None] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.defaults = defaults
        self._credentials = defaults.credentials  # built once: most messages carry no token of their own
        self._send = send
        # An async send (aiohttp's) is awaited in a task of its own; a plain one is just called.
        self._sends_later = inspect.iscoroutinefunction(send)
        self._closed = closed
        self._closed_or_cancelled: tuple[type[BaseException], ...] = (*closed, asyncio.CancelledError)
        self._calls = calls
        self._limit = max_in_flight
        self._on_room = room
        self._running: set[asyncio.Task[None]] = set()
        self._room: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._backlog = backlog or _nothing_unsent
        self._backlog_limit = limit
        self._overflow = overflow
        self._subscriber: Subscriber | None = None

    @property
    def full(self) -> bool:
        """Whether ``max_in_flight`` calls are running: stop reading until :meth:`room`."""
        return len(self._running) >= self._limit

    def receive(self, message: str | bytes) -> bytes | None:
        """Answer ``message`` (a text frame as str, a binary frame as bytes).

        Returns the answer when it is given at once (a message that does not parse, an OPEN the
        cache answers: :meth:`Dispatcher.answer_now`); the transport sends it before reading on.
        Otherwise None: the call runs in a task of its own, which sends its answer. Either way,
        check :attr:`full` before reading on.
        """
        if not isinstance(message, str):
            return encode(failure(InvalidRequest(BINARY), None, peer=self.defaults.peer))
        defaults = self.defaults
        try:
            request = parse_request(message, default_endpoint=defaults.endpoint, default_token=defaults.token)
        except FlowBusError as exc:
            return encode(failure(exc, exc.requestid, peer=defaults.peer))
        credentials = self._credentials
        if request.token is not defaults.token:  # the message carries a token of its own
            credentials = Credentials(token=request.token, peer=defaults.peer)
        answer = self.dispatcher.answer_now(request, credentials)
        if answer is not None:
            return encode(answer)
        self._track(self._loop.create_task(self._call(request, credentials)))
        return None

    def cancel(self) -> None:
        """The connection is gone: cancel its calls, end its subscriptions."""
        for task in list(self._running):
            task.cancel()
        if self._subscriber is not None:
            self._subscriber.close()

    @property
    def subscriptions(self) -> Subscriber:
        """The connection's subscriptions, made on the first SUBSCRIBE."""
        if self._subscriber is None:
            dispatcher = self.dispatcher
            self._subscriber = Subscriber(
                dispatcher.authenticator,
                dispatcher.authorizer,
                dispatcher.services,
                self._send,
                self._closed,
                self._backlog,
                self._backlog_limit,
                self._overflow,
            )
        return self._subscriber

    async def room(self) -> None:
        """Return once fewer than ``max_in_flight`` calls are running."""
        while self.full:
            self._room = self._loop.create_future()
            await self._room

    def _track(self, task: asyncio.Task[None]) -> None:
        if task.done():  # an eager task that never waited
            return
        self._running.add(task)
        self._calls.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        full = self.full
        self._running.discard(task)
        self._calls.tasks.discard(task)
        if full:
            self._made_room()

    def _made_room(self) -> None:
        """Tell whoever waits that a call or an answer is out of the way (``full`` was True)."""
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        if self._on_room is not None:
            self._on_room()

    async def _call(self, request: Request, credentials: Credentials) -> None:
        sink = _Sink(self, request.requestid, credentials)
        try:
            response = await self.dispatcher.handle(request, credentials, sink)
            if sink.interim:  # the final answer goes after the call's interim ones
                await asyncio.gather(*sink.interim, return_exceptions=True)
        except asyncio.CancelledError:  # shutdown past its grace, or the connection is gone
            await self._unavailable(request)
            raise
        try:
            sent = self._send(encode(response))
            if sent is not None:
                await sent
        except self._closed:
            pass

    def _progress(self, requestid: str | int | None, data: Any, interim: list[asyncio.Task[None]]) -> None:
        """Send a ``status: 1`` answer with the call's requestid; with an async send, in a task
        of its own, in order."""
        message = encode(Response(data=data, requestid=requestid, status=1))
        if not self._sends_later:
            with contextlib.suppress(*self._closed):
                self._send(message)
            return
        previous = interim[-1] if interim else None
        interim.append(self._loop.create_task(self._send_after(previous, message)))

    async def _send_after(self, previous: asyncio.Task[None] | None, message: bytes) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        with contextlib.suppress(*self._closed):
            sent = self._send(message)
            if sent is not None:
                await sent

    async def _unavailable(self, request: Request) -> None:
        """Tell the caller a call cut short by shutdown did not finish (if it can still hear it)."""
        error = Unavailable("The bus shut down before the call finished")
        response = failure(error, request.requestid, peer=self.defaults.peer)
        try:
            sent = self._send(encode(response))
            if sent is not None:
                await asyncio.shield(sent)
        except self._closed_or_cancelled:
            pass


class _Sink:
    """What the session lends one call (:class:`flowbus.endpoint.Sink`)."""

    __slots__ = ("_session", "credentials", "interim", "requestid")

    def __init__(self, session: Session, requestid: str | int | None, credentials: Credentials) -> None:
        self._session = session
        self.requestid = requestid
        self.credentials = credentials
        self.interim: list[asyncio.Task[None]] = []

    @property
    def subscriptions(self) -> Subscriber:
        return self._session.subscriptions

    def progress(self, data: Any) -> None:
        self._session._progress(self.requestid, data, self.interim)
