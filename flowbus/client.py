"""The Python client: one websocket connection, many calls in flight.

::

    async with Client("ws://127.0.0.1:8765", token=token) as bus:
        device = await bus.create("inventory/device", {"name": "core-sw-1"})
        same = await bus.open("inventory/device", device["id"])

Each call carries a fresh ``requestid``; a reader task matches answers to callers, so calls
made concurrently share the connection (interim ``status: 1`` answers of a streaming call are
skipped: the call returns its final answer). A failed call raises the :mod:`flowbus.errors` class
of its ``errorcode`` (with ``errorid`` set). If the connection drops, the next call reconnects
with exponential backoff; calls that are safe to repeat (LIST, OPEN, INDEX) are retried
transparently, others raise Unavailable because they may or may not have been applied.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from flowbus.errors import FlowBusError, Unavailable, error_class
from flowbus.protocol import Method

__all__ = ["IDEMPOTENT", "Client"]

logger = logging.getLogger("flowbus.client")

IDEMPOTENT = frozenset({Method.LIST, Method.OPEN, Method.INDEX})
_LOST = "The connection to the bus was lost"


class Client:
    """An RPC client of a FlowBus server.

    Args:
        url: the websocket URL, e.g. ``ws://127.0.0.1:8765``.
        token: sent with every call (the envelope's ``token``).
        namespace: the default namespace of calls.
        retries: how many times to reconnect (and to repeat an idempotent call) before giving up.
        backoff: the first delay between attempts, in seconds; it doubles up to ``max_backoff``.
        max_backoff: the longest delay between attempts.
        max_size: the largest answer accepted, in bytes.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        namespace: str = "",
        retries: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        max_size: int = 16 << 20,
    ) -> None:
        self.url = url
        self.token = token
        self.namespace = namespace
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_size = max_size
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._connecting = asyncio.Lock()
        self._closed = False
        # pushed messages by subscription id; those of an id not claimed yet wait in _unclaimed
        self._subscribed: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self._unclaimed: dict[str, list[dict[str, Any]]] = {}

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection, retrying with backoff.

        Raises:
            Unavailable: the bus could not be reached within ``retries`` attempts.
        """
        async with self._connecting:
            if self._ws is not None:
                return
            delay = self.backoff
            for attempt in range(self.retries + 1):
                try:
                    self._ws = await connect(self.url, max_size=self.max_size, compression=None)
                    break
                except (OSError, InvalidHandshake, TimeoutError) as exc:
                    if attempt == self.retries:
                        raise Unavailable(f"Cannot connect to {self.url}: {exc}") from exc
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
            assert self._ws is not None  # connected above, or raised
            self._reader = asyncio.create_task(self._read(self._ws))

    async def close(self) -> None:
        """Close the connection; calls still waiting raise Unavailable."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await self._reader
            self._reader = None

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                answer = orjson.loads(message)
                if "subscription" in answer and "event" in answer:
                    self._pushed(answer)
                    continue
                if answer.get("status") == 1:
                    continue  # an interim answer: the call waits for its final one
                future = self._pending.pop(answer.get("requestid"), None)
                if future is not None and not future.done():
                    future.set_result(answer)
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(Unavailable(_LOST))
            subscribed, self._subscribed, self._unclaimed = self._subscribed, {}, {}
            for queue in subscribed.values():
                queue.put_nowait(None)  # the connection is gone: the subscription resumes

    def _pushed(self, message: dict[str, Any]) -> None:
        sid = str(message["subscription"])
        queue = self._subscribed.get(sid)
        if queue is not None:
            queue.put_nowait(message)
        else:
            self._unclaimed.setdefault(sid, []).append(message)

    async def subscribe(
        self,
        endpoint: str,
        *,
        objectid: str | None = None,
        namespace: str | None = None,
        filters: dict[str, Any] | None = None,
        since: int | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The changes of ``endpoint``'s objects as they are committed (``async for``).

        Each is a pushed message: ``event``, ``endpoint``, ``objectid``, ``namespace``, ``data``,
        ``seq``. If the connection drops or the bus reports OVERFLOW, the subscription reconnects
        and resumes from the last ``seq`` it gave, so nothing is missed or repeated. With
        ``since``, the changes after that ``seq`` come first.

        Raises:
            FlowBusError: the bus refused the subscription (e.g. PERMISSION_DENIED, GONE), or ended
                it (the credentials are no longer valid: AuthFailed).
        """
        last = since
        while True:
            sid, latest = await self._subscribe_once(endpoint, objectid, namespace, filters, last)
            last = latest if last is None else last
            queue = self._subscribed[sid]
            try:
                while True:
                    message = await queue.get()
                    if message is None:
                        break  # the connection dropped: subscribe again from ``last``
                    if message["event"] == "OVERFLOW":
                        break
                    if message["event"] == "ENDED":
                        raise _error(message)
                    if message.get("seq") is not None:
                        last = message["seq"]
                    yield message
            finally:
                self._subscribed.pop(sid, None)
                await self._unsubscribe(endpoint, sid)

    async def _subscribe_once(
        self,
        endpoint: str,
        objectid: str | None,
        namespace: str | None,
        filters: dict[str, Any] | None,
        since: int | None,
    ) -> tuple[str, int]:
        parameters: dict[str, Any] = {}
        if filters:
            parameters["filters"] = filters
        if since is not None:
            parameters["since"] = since
        answer = await self.envelope(
            "SUBSCRIBE", endpoint, objectid=objectid, namespace=namespace, parameters=parameters or None
        )
        if not answer.get("success"):
            raise _error(answer)
        sid = str(answer["data"]["subscription"])
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        for message in self._unclaimed.pop(sid, []):
            queue.put_nowait(message)
        self._subscribed[sid] = queue
        return sid, int(answer["data"]["seq"])

    async def _unsubscribe(self, endpoint: str, sid: str) -> None:
        """End a subscription the bus may still hold (best effort: the connection may be gone)."""
        if self._ws is None or self._closed:
            return
        try:
            await self.envelope("UNSUBSCRIBE", endpoint, parameters={"subscription": sid})
        except Unavailable:
            pass

    async def envelope(
        self,
        method: str,
        endpoint: str,
        *,
        objectid: str | None = None,
        data: Any = None,
        parameters: dict[str, Any] | str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Make a call and return the answer envelope as a dict, whether it succeeded or not.

        Raises:
            Unavailable: the bus cannot be reached, or the connection dropped during a call
                that is not safe to repeat.
        """
        message: dict[str, Any] = {"method": method.upper(), "endpoint": endpoint, "token": self.token}
        message["namespace"] = self.namespace if namespace is None else namespace
        for key, value in (("objectid", objectid), ("data", data), ("parameters", parameters)):
            if value is not None:
                message[key] = value
        attempts = self.retries + 1 if method.upper() in IDEMPOTENT else 1
        delay = self.backoff
        for attempt in range(attempts):
            try:
                return await self._send(message)
            except Unavailable:
                if self._closed or attempt == attempts - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    async def _send(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise Unavailable("The client is closed")
        if self._ws is None:
            await self.connect()
        ws = self._ws
        if ws is None:
            raise Unavailable(_LOST)
        requestid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[requestid] = future
        try:
            await ws.send(orjson.dumps({**message, "requestid": requestid}).decode())
        except ConnectionClosed:
            self._pending.pop(requestid, None)
            raise Unavailable(_LOST) from None
        return await future

    async def call(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        """Make a call and return its ``data``; raise the error class of its errorcode on failure."""
        answer = await self.envelope(method, endpoint, **kwargs)
        if not answer.get("success"):
            raise _error(answer)
        return answer.get("data")

    async def list(self, endpoint: str, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """LIST: the objects of ``endpoint`` (one page; see ``parameters`` limit/page/sort/filters)."""
        return await self.call("LIST", endpoint, parameters=parameters, **kwargs)

    async def open(self, endpoint: str, objectid: str, **kwargs: Any) -> Any:
        """OPEN: one object."""
        return await self.call("OPEN", endpoint, objectid=objectid, **kwargs)

    async def create(self, endpoint: str, data: dict[str, Any], **kwargs: Any) -> Any:
        """CREATE: store a new object and return it."""
        return await self.call("CREATE", endpoint, data=data, **kwargs)

    async def update(self, endpoint: str, objectid: str, data: dict[str, Any], **kwargs: Any) -> Any:
        """UPDATE: change the given fields of an object and return it."""
        return await self.call("UPDATE", endpoint, objectid=objectid, data=data, **kwargs)

    async def delete(self, endpoint: str, objectid: str, **kwargs: Any) -> Any:
        """DELETE: remove an object."""
        return await self.call("DELETE", endpoint, objectid=objectid, **kwargs)

    async def index(
        self, endpoint: str, objectid: str | None = None, parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """INDEX: one object's index entry, or a search (``parameters={"q": ...}``)."""
        return await self.call("INDEX", endpoint, objectid=objectid, parameters=parameters, **kwargs)

    async def run(self, endpoint: str, objectid: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """RUN: execute a method or a flow."""
        return await self.call("RUN", endpoint, objectid=objectid, data=data, **kwargs)


def _error(answer: dict[str, Any]) -> FlowBusError:
    cls = error_class(str(answer.get("errorcode", "")))
    error = cls(str(answer.get("message") or ""), errorid=answer.get("errorid"))
    error.requestid = answer.get("requestid")
    return error
