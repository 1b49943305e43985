"""The calls of one websocket connection, whichever library carries it.

Both websocket entries (the bus's own websocket server and the gateway's ``/ws``) hand each
message to :meth:`Session.start`. A message that does not parse is answered at once, and so is a call
that the dispatcher's synchronous first stage (:meth:`Dispatcher.begin`) settles: a refusal, an
OPEN of a cached object. Every other call goes on in a task of its own (eager on Python 3.12+,
see :mod:`flowbus.tasks`) through :meth:`Dispatcher.finish`. Up to ``max_in_flight`` calls may
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

from flowbus.auth.base import Credentials
from flowbus.dispatcher import Begun, Dispatcher
from flowbus.errors import InvalidRequest, Unavailable
from flowbus.protocol import Method, Request, Response
from flowbus.subscriptions import DEFAULT_BACKLOG, Subscriber

__all__ = ["BINARY", "Calls", "Defaults", "Session"]

_SUBSCRIPTIONS = frozenset({Method.SUBSCRIBE, Method.UNSUBSCRIBE})


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

    def start(self, message: str | bytes) -> bool:
        """Start answering ``message`` (a text frame as str, a binary frame as bytes), for a
        transport whose send is plain (an async one uses :meth:`take`).

        Returns True if the session is now full: then wait for :meth:`room` before reading on.
        """
        taken: Response | Begun
        if isinstance(message, str):
            parsed = self.dispatcher.parse(message, self.defaults.endpoint, self._credentials)
            if not isinstance(parsed, Response) and parsed[0].method in _SUBSCRIPTIONS:
                return self._subscription(*parsed)
            # most refusals and OPENs of cached objects end in begin()
            taken = parsed if isinstance(parsed, Response) else self.dispatcher.begin(*parsed)
        else:
            taken = self.dispatcher.fail(InvalidRequest(BINARY), None, peer=self.defaults.peer)
        if isinstance(taken, Response):  # answered at once, without a task for the call
            self._send(self.dispatcher.encode(taken))
            return self.full
        self._track(self._loop.create_task(self._call(taken)))
        return self.full

    def take(self, message: str | bytes) -> bytes | None:
        """Like :meth:`start`, for a transport whose send is async: the answer when it was given at
        once (the caller sends it, in its own task, before reading on), else None (the call runs
        in a task of its own, which sends its answer; check :attr:`full` before reading on)."""
        taken: Response | Begun
        if isinstance(message, str):
            parsed = self.dispatcher.parse(message, self.defaults.endpoint, self._credentials)
            if not isinstance(parsed, Response) and parsed[0].method in _SUBSCRIPTIONS:
                self._subscription(*parsed)
                return None
            taken = parsed if isinstance(parsed, Response) else self.dispatcher.begin(*parsed)
        else:
            taken = self.dispatcher.fail(InvalidRequest(BINARY), None, peer=self.defaults.peer)
        if isinstance(taken, Response):
            return self.dispatcher.encode(taken)
        self._track(self._loop.create_task(self._call(taken)))
        return None

    def cancel(self) -> None:
        """The connection is gone: cancel its calls, end its subscriptions."""
        for task in list(self._running):
            task.cancel()
        if self._subscriber is not None:
            self._subscriber.close()

    def _subscription(self, request: Request, credentials: Credentials) -> bool:
        """SUBSCRIBE (in a task: it may replay the change log) or UNSUBSCRIBE (at once)."""
        if self._subscriber is None:
            self._subscriber = Subscriber(
                self.dispatcher, self._send, self._closed, self._backlog, self._backlog_limit, self._overflow
            )
        if request.method is Method.UNSUBSCRIBE:
            answer = self.dispatcher.encode(self._subscriber.unsubscribe(request))
            self._subscriber.send(answer)
            return self.full
        self._track(self._loop.create_task(self._subscriber.subscribe(request, credentials)))
        return self.full

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

    async def _call(self, begun: Begun) -> None:
        interim: list[asyncio.Task[None]] = []
        begun.sink = self._sink(begun.request.requestid, interim)
        try:
            response = await self.dispatcher.finish(begun)
            if interim:  # the final answer goes after the call's interim ones
                await asyncio.gather(*interim, return_exceptions=True)
        except asyncio.CancelledError:  # shutdown past its grace, or the connection is gone
            await self._unavailable(begun.request)
            raise
        try:
            sent = self._send(self.dispatcher.encode(response))
            if sent is not None:
                await sent
        except self._closed:
            pass

    def _sink(self, requestid: str | int | None, interim: list[asyncio.Task[None]]) -> Callable[[Any], None]:
        """What a call's :meth:`~flowbus.endpoint.Call.progress` sends through: a ``status: 1``
        answer with the call's requestid; with an async send, in a task of its own, in order."""

        def send(data: Any) -> None:
            message = self.dispatcher.encode(Response(data=data, requestid=requestid, status=1))
            if not self._sends_later:
                with contextlib.suppress(*self._closed):
                    self._send(message)
                return
            previous = interim[-1] if interim else None
            interim.append(self._loop.create_task(self._send_after(previous, message)))

        return send

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
        response = self.dispatcher.fail(error, request.requestid, peer=self.defaults.peer)
        try:
            sent = self._send(self.dispatcher.encode(response))
            if sent is not None:
                await asyncio.shield(sent)
        except self._closed_or_cancelled:
            pass
