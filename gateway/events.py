"""Subscriptions over HTTP: ``GET /api/<app>/<endpoint>/?subscribe=1`` as Server-Sent Events.

For integrations that cannot hold a websocket. The same subscription as a websocket SUBSCRIBE
(:mod:`flowbus.subscriptions`): the call's namespace, ``objectid`` and filters narrow it, the
caller must be allowed to OPEN what it watches, and every change is sent once, in commit order::

    id: 1234
    event: UPDATED
    data: {"event": "UPDATED", "endpoint": "inventory/device", "objectid": ..., "seq": 1234, ...}

The first message is ``event: subscribed`` (its data the subscription's answer). A client that
reconnects sends the ``Last-Event-ID`` header (browsers' EventSource do it themselves) or
``?since=<seq>``: the changes after it are sent first, then the live ones. A comment line every
15 seconds keeps proxies from closing an idle stream. A refusal before the stream starts is the
usual JSON envelope with its HTTP status.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from flowbus.answers import encode, failure
from flowbus.auth.base import Credentials
from flowbus.dispatcher import Dispatcher
from flowbus.errors import FlowBusError, InvalidRequest
from flowbus.params import RESERVED
from flowbus.protocol import Method, Request
from flowbus.subscriptions import Subscriber
from gateway.keys import SETTINGS, SOCKETS
from gateway.rendering import render

__all__ = ["KEEPALIVE", "stream_events", "wants_events"]

KEEPALIVE = 15.0
_STREAMED = frozenset({Method.LIST, Method.OPEN})
_CLOSED = (ConnectionError, RuntimeError)  # what writing to a stream raises once it is gone


def wants_events(call: Request) -> bool:
    """Whether an HTTP call asks for a stream of events (a GET, of a collection or of one object,
    with ``subscribe=1``)."""
    return call.method in _STREAMED and str(call.parameters.get("subscribe", "")).lower() in ("1", "true")


async def stream_events(
    request: web.Request, dispatcher: Dispatcher, call: Request, credentials: Credentials
) -> web.StreamResponse:
    """Answer ``call`` as a stream of Server-Sent Events until the client goes away.

    The stream is a SUBSCRIBE made through the pipeline (authenticated and authorized like any
    call); a refusal is the usual envelope with its HTTP status, before the stream starts."""
    stream = _Stream(request)
    settings = request.app[SETTINGS]
    streams = request.app[SOCKETS].streams
    transport = request.transport
    subscriber = Subscriber(
        dispatcher.authenticator,
        dispatcher.authorizer,
        dispatcher.services,
        stream.push,
        _CLOSED,
        lambda: transport.get_write_buffer_size() if transport is not None else 0,
        settings.subscriber_backlog,
    )
    try:
        try:
            subscribe = _subscription(request, call)
        except FlowBusError as exc:
            answer = failure(exc, None, peer=credentials.peer)
        else:
            answer = await dispatcher.handle(subscribe, credentials, _StreamSink(credentials, subscriber))
        if answer.error is not None:
            status, headers, body = render(answer, "")
            return web.Response(status=status, headers=headers, body=body)
        await stream.start(encode(answer))
        streams.add(stream.gone)
        await stream.until_gone()
    finally:
        streams.discard(stream.gone)
        subscriber.close()
    return stream.response


class _Stream:
    """The event stream's response: what is pushed before it started waits for it; it ends when
    a write fails (the client is gone) or the bus shuts down (:attr:`gone` is set)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        self.gone = asyncio.Event()
        self._started = asyncio.Event()

    async def start(self, answer: bytes) -> None:
        """Send the headers and the ``subscribed`` event (the SUBSCRIBE's answer)."""
        await self.response.prepare(self.request)
        await self.response.write(_frame(answer))
        self._started.set()

    async def push(self, message: bytes) -> None:
        await self._started.wait()
        await self._write(_frame(message))

    async def until_gone(self) -> None:
        """Keep the stream open, with a comment after every ``KEEPALIVE`` quiet seconds (which also
        finds a client that left without a word), until the client or the bus goes."""
        while not self.gone.is_set():
            try:
                await asyncio.wait_for(self.gone.wait(), KEEPALIVE)
            except TimeoutError:
                await self._write(b": keepalive\n\n")

    async def _write(self, data: bytes) -> None:
        try:
            await self.response.write(data)
        except _CLOSED:
            self.gone.set()
            raise


class _StreamSink:
    """What the stream lends its SUBSCRIBE (:class:`flowbus.endpoint.Sink`)."""

    __slots__ = ("credentials", "subscriptions")
    requestid = None

    def __init__(self, credentials: Credentials, subscriptions: Subscriber) -> None:
        self.credentials = credentials
        self.subscriptions = subscriptions

    def progress(self, data: Any) -> None:
        """A stream carries no interim answers."""


def _subscription(request: web.Request, call: Request) -> Request:
    """The SUBSCRIBE the stream makes."""
    since = request.headers.get("Last-Event-ID") or call.parameters.get("since")
    filters = {k: v for k, v in call.parameters.items() if k not in ("subscribe", "since") and k not in RESERVED}
    if any(not isinstance(v, str) for v in filters.values()):
        raise InvalidRequest("Each filter of a stream is one field=value")
    parameters: dict[str, Any] = {"filters": filters}
    if since is not None:
        parameters["since"] = since
    return Request(Method.SUBSCRIBE, call.endpoint, call.objectid, None, call.namespace, parameters)


def _frame(message: bytes) -> bytes:
    """One pushed message (or the subscription's answer) as a Server-Sent Event."""
    parsed = orjson.loads(message)
    if "success" in parsed:
        kind = "subscribed" if parsed["success"] else "error"
        return b"event: " + kind.encode() + b"\ndata: " + message + b"\n\n"
    seq = parsed.get("seq")
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {parsed.get('event')}\ndata: ".encode() + message + b"\n\n"
