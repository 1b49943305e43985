"""The registry: every endpoint of the bus by name, frozen into a lookup table at startup."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flowbus.endpoint import Application, Call, Endpoint, Sink
from flowbus.errors import MethodNotSupported
from flowbus.protocol import Method

__all__ = ["Entry", "Registry", "subscribe", "unsubscribe"]

_UNSUBSCRIBE = frozenset({Method.UNSUBSCRIBE})
"""Ending one of the connection's own subscriptions needs no credentials (they may have expired)."""


async def subscribe(call: Call) -> dict[str, Any]:
    """SUBSCRIBE, a method of every endpoint: hands the call to the connection's subscriptions."""
    sink = _streaming(call)
    return await sink.subscriptions.subscribe(call, sink.credentials, sink.requestid)


async def unsubscribe(call: Call) -> dict[str, Any]:
    """UNSUBSCRIBE, a method of every endpoint: ends one of the connection's subscriptions."""
    return _streaming(call).subscriptions.unsubscribe(call)


def _streaming(call: Call) -> Sink:
    if call.sink is None:
        raise MethodNotSupported(f"{call.method} needs a websocket connection or an event stream")
    return call.sink


@dataclass(slots=True, frozen=True)
class Entry:
    """A registered endpoint, its application and its prepared handlers."""

    endpoint: Endpoint
    app: str
    handlers: dict[Method, Callable[[Any], Any]]
    public: frozenset[Method]
    peek: Callable[[str, str], tuple[bytes, int | None] | None] | None = None
    """The endpoint's fast path of OPEN, if it has one (see :meth:`Endpoint.peek`)."""


class Registry:
    """Names to endpoints. Add applications, then :meth:`freeze` before serving."""

    def __init__(self, apps: Iterable[Application] = ()) -> None:
        self._apps: dict[str, Application] = {}
        self._entries: dict[str, Entry] = {}
        self._frozen = False
        self.functions: dict[str, Callable[..., Any]] = {}
        """Every application's registered callables by name (see :meth:`Application.function`)."""
        for app in apps:
            self.add(app)

    def add(self, app: Application) -> None:
        """Register every endpoint of ``app``.

        Raises:
            ValueError: the application or one of its endpoint names is already taken,
                or the registry is frozen.
        """
        if self._frozen:
            raise ValueError("the registry is frozen: add applications before the bus starts")
        if app.name in self._apps:
            raise ValueError(f"application {app.name!r} is registered twice")
        for name in app.functions:
            if name in self.functions:
                raise ValueError(f"function {name!r} is registered twice")
        for endpoint in app.endpoints:
            if endpoint.name in self._entries:
                raise ValueError(f"endpoint {endpoint.name!r} is registered twice")
            methods = endpoint.methods
            handlers = {method: endpoint.handler(method) for method in methods}
            handlers[Method.SUBSCRIBE] = subscribe
            handlers[Method.UNSUBSCRIBE] = unsubscribe
            peek = endpoint.peek if Method.OPEN in methods and type(endpoint).peek is not Endpoint.peek else None
            public = endpoint.public & methods | _UNSUBSCRIBE
            self._entries[endpoint.name] = Entry(endpoint, app.name, handlers, public, peek)
        self._apps[app.name] = app
        self.functions.update(app.functions)

    def freeze(self) -> None:
        """Refuse further additions; the lookup table is final."""
        self._frozen = True

    def get(self, name: str) -> Entry | None:
        """The entry of endpoint ``name``, or None."""
        return self._entries.get(name)

    @property
    def apps(self) -> dict[str, Application]:
        return dict(self._apps)

    def entries(self) -> list[Entry]:
        """Every entry, sorted by endpoint name."""
        return [self._entries[name] for name in sorted(self._entries)]

    def describe(self) -> list[dict[str, Any]]:
        """Discovery data of every endpoint, sorted by name."""
        return [{**e.endpoint.describe(), "application": e.app} for e in self.entries()]
