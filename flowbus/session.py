"""The calls of one websocket connection, whichever library carries it.

Both websocket entries (the ``websockets`` server and the gateway's ``/ws``) hand each message
to :meth:`Session.start`, which answers it at once when it can: a call that never has to wait
(an OPEN served from the cache, a refused call) is answered without a task of its own. A call
that has to wait goes on in a task, watched by the dispatcher's deadlines; up to
``max_in_flight`` such calls may wait at once, past that the transport stops reading the
connection until one ends (the client feels TCP backpressure; nothing is buffered without bound).

Python 3.11 has no eager tasks, so :mod:`flowbus.eager` makes one by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from flowbus.auth.base import Credentials
from flowbus.dispatcher import Dispatcher
from flowbus.eager import Paused, resume, start
from flowbus.errors import InvalidRequest, Unavailable
from flowbus.protocol import Request, encode_response, parse_request

__all__ = ["Calls", "Defaults", "Session"]

BINARY = "Binary frames are not accepted: send each envelope as a JSON text frame"

Send = Callable[[bytes], Coroutine[Any, Any, Any]]


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
    """The waiting calls of one transport's connections, so that shutdown can let them finish."""

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
        max_in_flight: calls that may wait at once.
        calls: where the transport keeps track of waiting calls.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        send: Send,
        closed: tuple[type[BaseException], ...],
        defaults: Defaults,
        max_in_flight: int,
        calls: Calls,
    ) -> None:
        self.dispatcher = dispatcher
        self.defaults = defaults
        self._credentials = defaults.credentials  # built once: most messages carry no token of their own
        self._send = send
        self._closed = closed
        self._calls = calls
        self._limit = max_in_flight
        self._waiting = 0
        self._room: asyncio.Future[None] | None = None

    def start(self, message: str | bytes) -> bool:
        """Start answering ``message`` (a text frame as str, a binary frame as bytes).

        Returns True if the call goes on in a task (it had to wait): then await :meth:`room`
        before reading the connection again.
        """
        if isinstance(message, str):
            taken = self.dispatcher.take_message(message, self.defaults.endpoint, self._credentials)
        else:
            taken = encode_response(self.dispatcher.fail(InvalidRequest(BINARY), None, peer=self.defaults.peer))
        try:  # an answer given at once is sent without a coroutine of this session's around it
            paused = start(self._send(taken) if type(taken) is bytes else self._answer(taken))  # type: ignore[arg-type]
        except self._closed:
            return False
        if not isinstance(paused, Paused):
            return False
        task = asyncio.get_running_loop().create_task(self._go_on(paused, message))
        self.dispatcher.deadlines.watch(task)
        self._calls.tasks.add(task)
        task.add_done_callback(self._ended)
        self._waiting += 1
        return True

    async def room(self) -> None:
        """Return once fewer than ``max_in_flight`` calls are waiting."""
        while self._waiting >= self._limit:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.dispatcher.deadlines.leave(task)
        self._calls.tasks.discard(task)
        self._waiting -= 1
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    async def _answer(self, taken: tuple[Request, Credentials]) -> None:
        await self._send(await self.dispatcher.answer(*taken))

    async def _go_on(self, paused: Paused, message: str | bytes) -> None:
        """The rest of a call that had to wait (its answer, or the sending of it), in a task."""
        try:
            await resume(paused)
        except asyncio.CancelledError:
            await self._send_unavailable(message)
            raise
        except self._closed:
            pass

    async def _send_unavailable(self, message: str | bytes) -> None:
        """Tell the caller a call cut short by shutdown did not finish."""
        try:
            requestid = parse_request(message, default_endpoint=self.defaults.endpoint).requestid
        except Exception:
            requestid = None
        error = Unavailable("The bus shut down before the call finished")
        response = self.dispatcher.fail(error, requestid, peer=self.defaults.peer)
        try:
            await asyncio.shield(self._send(encode_response(response)))
        except (*self._closed, asyncio.CancelledError):
            pass
