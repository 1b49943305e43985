"""Subscriptions of one websocket connection: change events pushed as they are committed.

``SUBSCRIBE`` names an ``endpoint``, optionally one ``objectid``, a ``namespace`` and exact-match
field filters (``parameters.filters``); it answers ``{"subscription": "s-1", "seq": <latest>}``.
From then on every change of a matching object (from either transport, a flow, or another
process sharing the store) is pushed once, in commit order::

    {"event": "UPDATED", "endpoint": "inventory/device", "objectid": "...", "namespace": "",
     "data": {...}, "subscription": "s-1", "seq": 1234}

With ``parameters.since=<seq>`` the changes committed after that sequence are replayed from the
change log first, then the subscription goes live with no gap and no duplicate (live events are
held while the log is read, and only those after the last replayed ``seq`` are pushed). A
``since`` the log no longer holds answers GONE: reload, then subscribe from the ``seq`` answered.

A subscriber gets only what it may OPEN, in namespaces it may see: checked at SUBSCRIBE and for
every event, with the caller's credentials as they are then (a revoked token ends the
subscription, a narrowed role stops its events). Memory stays bounded: when the connection's
unsent bytes pass ``backlog`` (a client that does not read), the subscription ends with one
``OVERFLOW`` notice carrying the last ``seq`` delivered, from which the client resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from flowbus.answers import failure
from flowbus.auth.base import Authenticator, Authorizer, Credentials, Identity
from flowbus.backplane import Event, token
from flowbus.endpoint import Call, Services
from flowbus.errors import FlowBusError, Gone, InvalidRequest, PermissionDenied
from flowbus.feed import event_of
from flowbus.params import check_field_name
from flowbus.protocol import Method, encode_response

__all__ = ["DEFAULT_BACKLOG", "Subscriber"]

DEFAULT_BACKLOG = 1 << 20
"""Unsent bytes of a connection past which its subscriptions end with OVERFLOW."""
_REPLAY_BATCH = 1000

Push = Callable[[bytes], Awaitable[None] | None]
RequestId = str | int | None


class _Subscription:
    """One subscription: what it matches, whose it is, and how far it has delivered."""

    def __init__(self, sid: str, call: Call, credentials: Credentials, filters: dict[str, Any]) -> None:
        self.id = sid
        self.endpoint = call.endpoint
        self.namespace = call.namespace
        self.objectid = call.objectid
        self.filters = filters
        self.credentials = credentials
        self.last = 0  # the seq of the last change delivered
        self.live = False
        self.quoted = orjson.dumps(sid)
        self.held: list[Event] = []  # events that came while the log was replayed or rights rechecked
        self.checking = False
        self.stop: Callable[[], None] = _nothing

    def matches(self, event: Event) -> bool:
        if event.namespace != self.namespace or event.endpoint != self.endpoint:
            return False
        if self.objectid is not None and event.objectid != self.objectid:
            return False
        data = event.data if isinstance(event.data, dict) else {}
        return all(data.get(name) == value for name, value in self.filters.items())

    def pattern(self) -> str:
        objectid = token(self.objectid) if self.objectid is not None else "*"
        return f"{token(self.namespace)}.{token(self.endpoint)}.{objectid}"


def _nothing() -> None:
    return None


class Subscriber:
    """The subscriptions of one connection (:class:`flowbus.endpoint.Subscriptions`).

    SUBSCRIBE and UNSUBSCRIBE reach it through the pipeline, like every call: authenticated,
    routed and authorized there (SUBSCRIBE as an OPEN of the endpoint), then handed to the
    connection's subscriptions through the call's :class:`~flowbus.endpoint.Sink`.

    Args:
        authenticator: checks the subscriber's credentials again for later events.
        authorizer: checks, for every event, that the subscriber may still read it.
        services: the bus's services (the store's change log, the backplane).
        push: sends one message to the client (plain or awaitable).
        closed: what ``push`` raises once the connection is gone.
        backlog: the connection's bytes written but not yet sent.
        limit: unsent bytes past which subscriptions end with OVERFLOW.
        close: given, the connection is closed instead (policy ``close``).
    """

    def __init__(
        self,
        authenticator: Authenticator,
        authorizer: Authorizer,
        services: Services,
        push: Push,
        closed: tuple[type[BaseException], ...],
        backlog: Callable[[], int],
        limit: int = DEFAULT_BACKLOG,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.services = services
        self._close = close
        self._push = push
        self._closed = closed
        self._backlog = backlog
        self._limit = limit
        self._subscriptions: dict[str, _Subscription] = {}
        self._numbers = itertools.count(1)
        self._queue: deque[bytes] = deque()  # for an async push: sent in order by one task
        self._queued = 0
        self._sender: asyncio.Task[None] | None = None
        self._async = asyncio.iscoroutinefunction(push)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- SUBSCRIBE and UNSUBSCRIBE ----------------------------------------------------------

    async def subscribe(self, call: Call, credentials: Credentials, requestid: str | int | None) -> dict[str, Any]:
        """Open the subscription (the pipeline has authorized it), answer ``{"subscription",
        "seq"}``; the replay that ``since`` asks for, then the live events, follow the answer."""
        since = _since(call.parameters.get("since"))
        filters = _filters(call.parameters.get("filters"))
        store = self.services.store
        latest = await store.last_seq()
        if since is not None and since < await store.first_seq():
            raise Gone(f"Changes after {since} are no longer kept: reload, then subscribe from seq {latest}")
        sid = f"s-{next(self._numbers)}"
        subscription = _Subscription(sid, call, credentials, filters)
        subscription.stop = self.services.backplane.subscribe(
            subscription.pattern(), lambda _, event: self._heard(subscription, event)
        )
        self._subscriptions[sid] = subscription
        # Started once this turn of the loop is over: after the transport has sent the answer.
        asyncio.get_running_loop().call_soon(self._start, subscription, since, latest, call.identity, requestid)
        return {"subscription": sid, "seq": latest}

    def unsubscribe(self, call: Call) -> dict[str, Any]:
        """End the subscription ``parameters.subscription`` (or the objectid) names."""
        sid = call.parameters.get("subscription") or call.objectid
        subscription = self._subscriptions.get(sid) if isinstance(sid, str) else None
        if subscription is None:
            raise InvalidRequest("'parameters.subscription' must name a subscription of this connection")
        self._end(subscription)
        return {"subscription": subscription.id}

    def close(self) -> None:
        """The connection is gone: end every subscription."""
        for subscription in list(self._subscriptions.values()):
            self._end(subscription)
        for task in list(self._tasks):
            task.cancel()
        if self._sender is not None:
            self._sender.cancel()

    def _start(
        self, subscription: _Subscription, since: int | None, latest: int, identity: Identity, requestid: RequestId
    ) -> None:
        if subscription.id not in self._subscriptions:
            return
        task = asyncio.get_running_loop().create_task(self._go_live(subscription, since, latest, identity, requestid))
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _go_live(
        self, subscription: _Subscription, since: int | None, latest: int, identity: Identity, requestid: RequestId
    ) -> None:
        """Replay what ``since`` asks for, then deliver what was held, then go live."""
        try:
            if since is not None:
                await self._replay(subscription, since, identity)
        except FlowBusError as exc:  # GONE: the log no longer holds what was asked for
            self._end(subscription)
            self._send(encode_response(failure(exc, requestid)))
            return
        if since is None:
            subscription.last = latest  # what was committed before SUBSCRIBE is not pushed
        subscription.live = True
        held, subscription.held = subscription.held, []
        for event in held:
            self._deliver(subscription, event)

    async def _replay(self, subscription: _Subscription, since: int, identity: Identity) -> None:
        """Deliver the changes after ``since`` as the identity SUBSCRIBE was checked with: every
        change read is delivered or passed over here, never held (the read goes on after it)."""
        store = self.services.store
        subscription.last = since
        while subscription.id in self._subscriptions:
            changes = await store.changes(subscription.last, _REPLAY_BATCH)
            if not changes:
                return
            for change in changes:
                event = event_of(change)
                if subscription.matches(event):
                    self._deliver(subscription, event, identity)
                subscription.last = change.seq

    # -- delivery ---------------------------------------------------------------------------

    def _heard(self, subscription: _Subscription, event: Event) -> None:
        if not subscription.matches(event):
            return
        if subscription.live:
            self._deliver(subscription, event)
        else:
            subscription.held.append(event)

    def _deliver(self, subscription: _Subscription, event: Event, identity: Identity | None = None) -> None:
        if event.seq is not None and event.seq <= subscription.last:
            return  # replayed already
        identity = identity or self.authenticator.known(subscription.credentials)
        if identity is None:  # not verified lately (a role changed, the token was refreshed): check again
            subscription.live = False
            subscription.held.append(event)
            self._recheck(subscription)
            return
        try:
            self.authorizer.authorize(identity, Method.OPEN, subscription.endpoint, subscription.namespace)
        except PermissionDenied:
            return  # the subscriber may no longer see this
        if self._backlog() + self._queued > self._limit:
            self._overflow(subscription)
            return
        if event.seq is not None:
            subscription.last = event.seq
        self._send(b'{"subscription":' + subscription.quoted + b"," + _encoded(event)[1:])

    def _recheck(self, subscription: _Subscription) -> None:
        if subscription.checking:
            return
        subscription.checking = True
        asyncio.get_running_loop().create_task(self._reauthenticate(subscription))

    async def _reauthenticate(self, subscription: _Subscription) -> None:
        """Verify the subscriber's credentials again, then deliver what waited (or end it)."""
        try:
            identity = await self.authenticator.authenticate(subscription.credentials)
        except FlowBusError as exc:
            self._end(subscription)
            self._send(_notice("ENDED", subscription, exc))
            return
        finally:
            subscription.checking = False
        if subscription.id not in self._subscriptions:
            return
        subscription.live = True
        held, subscription.held = subscription.held, []
        for event in held:
            self._deliver(subscription, event, identity)

    def _overflow(self, subscription: _Subscription) -> None:
        if self._close is not None:  # the policy is to drop the connection (FLOWBUS_SUBSCRIBER_OVERFLOW=close)
            self.close()
            self._close()
            return
        self._end(subscription)
        notice = {"event": "OVERFLOW", "subscription": subscription.id, "seq": subscription.last}
        self._send(orjson.dumps(notice))  # past the bound: one notice, and nothing after it

    def _end(self, subscription: _Subscription) -> None:
        subscription.stop()
        self._subscriptions.pop(subscription.id, None)

    def _send(self, message: bytes) -> None:
        if not self._async:
            with contextlib.suppress(*self._closed):
                self._push(message)
            return
        self._queue.append(message)
        self._queued += len(message)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            message = self._queue.popleft()
            self._queued -= len(message)
            try:
                sent = self._push(message)
                if sent is not None:
                    await sent
            except self._closed:
                self._queue.clear()
                self._queued = 0
                return


_last_encoded: list[Any] = [None, b""]


def _encoded(event: Event) -> bytes:
    """An event's pushed message without its subscription, encoded once for all its subscribers
    (the backplane hands one event to each of them in turn)."""
    if _last_encoded[0] is not event:
        body = {
            "event": event.event,
            "endpoint": event.endpoint,
            "objectid": event.objectid,
            "namespace": event.namespace,
            "data": event.data,
            "seq": event.seq,
        }
        _last_encoded[0], _last_encoded[1] = event, orjson.dumps(body)
    encoded: bytes = _last_encoded[1]
    return encoded


def _notice(event: str, subscription: _Subscription, error: FlowBusError) -> bytes:
    return orjson.dumps(
        {
            "event": event,
            "subscription": subscription.id,
            "seq": subscription.last,
            "errorcode": error.errorcode,
            "message": error.message,
        }
    )


def _since(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if type(value) is not int or value < 0:
        raise InvalidRequest("'since' must be a sequence number (an integer >= 0)")
    return value


def _filters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 64:
        raise InvalidRequest("'filters' must be an object of at most 64 field: value pairs")
    return {check_field_name(str(name)): wanted for name, wanted in value.items()}
