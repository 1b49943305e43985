"""The Backplane seam: how events leave the code that made them, on subjects.

Subjects are shaped like NATS subjects so that a NATS backplane fits later:
``<namespace>.<endpoint>.<objectid>``, tokens separated by ``.``. In a subscription pattern ``*``
matches exactly one token and ``>`` (last token only) matches one or more tokens.

Namespaces, endpoint names and object ids map to tokens reversibly with :func:`token`: the
characters ``%``, ``.``, ``*``, ``>``, whitespace and control characters are written as ``%XX``
(the UTF-8 bytes, upper-case hex, as in URLs), the empty string (the default namespace) as ``_``,
and a value that is exactly ``_`` as ``%5F``. :func:`untoken` reverses it.

:class:`LocalBackplane` delivers events to subscribers in this process, synchronously: handlers
must be quick and never block (schedule async work with ``asyncio``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

import orjson

__all__ = ["Backplane", "Event", "Handler", "LocalBackplane", "every_object", "subject", "token", "untoken"]

logger = logging.getLogger("flowbus.backplane")

_SPECIAL = re.compile(r"[%.*>\s\x00-\x1f\x7f]")
_NOT_IN_TOKEN = re.compile(r"[.*>\s\x00-\x1f\x7f]")  # what no token written by token() holds
_EMPTY = "_"


class Event:
    """Something that happened to an object: CREATED, UPDATED, DELETED or an endpoint-specific kind.

    Attributes:
        event: the kind.
        endpoint: the endpoint (for a stored change: the collection).
        objectid: the object's id.
        namespace: the namespace (``""`` is the default one).
        data: the object as it is now (for DELETED: what the change recorded), or the kind's payload.
            Given as JSON text (``body``), it is decoded on first use: a handler that needs only
            the rest (the kind, the version) costs nothing for it.
        seq: the change's position in the store's change log; None for events that are not stored.
        version: the object's version after the change; None if unknown.
    """

    __slots__ = ("_body", "_data", "endpoint", "event", "namespace", "objectid", "seq", "version")

    def __init__(
        self,
        event: str,
        endpoint: str,
        objectid: str,
        namespace: str,
        data: Any = None,
        seq: int | None = None,
        version: int | None = None,
        *,
        body: str | bytes | None = None,
    ) -> None:
        self.event = event
        self.endpoint = endpoint
        self.objectid = objectid
        self.namespace = namespace
        self.seq = seq
        self.version = version
        self._data = data
        self._body = body if data is None else None

    @property
    def data(self) -> Any:
        if self._body is not None:
            self._data = orjson.loads(self._body)
            self._body = None
        return self._data

    @property
    def body(self) -> str | bytes | None:
        """The JSON text of :attr:`data` while it has not been decoded, else None."""
        return self._body

    @property
    def subject(self) -> str:
        """The subject this event is published on."""
        return subject(self.namespace, self.endpoint, self.objectid)

    def _fields(self) -> tuple[Any, ...]:
        return (self.event, self.endpoint, self.objectid, self.namespace, self.data, self.seq, self.version)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # its data may be mutable

    def __repr__(self) -> str:
        return (
            f"Event(event={self.event!r}, endpoint={self.endpoint!r}, objectid={self.objectid!r},"
            f" namespace={self.namespace!r}, data={self.data!r}, seq={self.seq!r}, version={self.version!r})"
        )


Handler = Callable[[str, Event], None]
"""Called with the subject and the event."""


@functools.lru_cache(maxsize=4096)  # namespaces and endpoints repeat: each is escaped once
def token(value: str) -> str:
    """Write ``value`` as one subject token (reversibly; see the module's documentation)."""
    if not value:
        return _EMPTY
    if value == _EMPTY:
        return "%5F"
    return _SPECIAL.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)


def untoken(value: str) -> str:
    """Read back a token written by :func:`token`."""
    return "" if value == _EMPTY else unquote(value, errors="strict")


def subject(namespace: str, endpoint: str, objectid: str) -> str:
    """The subject of events about ``objectid`` of ``endpoint`` in ``namespace``."""
    return f"{token(namespace)}.{token(endpoint)}.{token(objectid)}"


def every_object(endpoint: str) -> str:
    """The pattern of the subjects of every object of ``endpoint``, in every namespace."""
    return f"*.{token(endpoint)}.*"


class Backplane(Protocol):
    """Carries events from publishers to subscribers, here or in other processes."""

    def publish(self, subject: str, event: Event) -> None:
        """Hand ``event`` to every subscriber whose pattern matches ``subject``; never blocks or raises."""
        ...

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler`` for every event published on a subject matching ``pattern``.

        Returns:
            A function that ends the subscription (calling it again does nothing).

        Raises:
            ValueError: ``pattern`` is not a valid pattern.
        """
        ...


def _compile(pattern: str) -> re.Pattern[str] | None:
    """The regular expression of a wildcard pattern, or None for an exact subject.

    Raises:
        ValueError: an empty token, a wildcard inside a token, or ``>`` before the last token.
    """
    tokens = pattern.split(".")
    parts: list[str] = []
    for i, tok in enumerate(tokens):
        if tok == ">" and i == len(tokens) - 1:
            parts.append(r"[^.]+(?:\.[^.]+)*")
        elif tok == "*":
            parts.append(r"[^.]+")
        elif tok and not _NOT_IN_TOKEN.search(tok):
            parts.append(re.escape(tok))
        else:
            raise ValueError(f"invalid subject pattern {pattern!r}")
    wild = "*" in tokens or tokens[-1] == ">"
    return re.compile(r"\.".join(parts)) if wild else None


_Wild = tuple[int, re.Pattern[str] | None, Handler]
"""A wildcard subscription: its place in subscription order, its pattern (None when it matches
every subject it is asked about), its handler."""


def _order(wild: _Wild) -> int:
    return wild[0]


def _endpoint_token(pattern: str) -> str | None:
    """The literal endpoint token of a three-token pattern (``*.inventory/device.*``), else None."""
    tokens = pattern.split(".")
    if len(tokens) == 3 and tokens[1] not in ("*", ">") and tokens[2] != ">":
        return tokens[1]
    return None


@dataclass(slots=True, eq=False)
class _Exact:
    """One subscription to an exact subject (compared by identity, so one can be dropped)."""

    handler: Handler


class LocalBackplane:
    """Delivers events to subscribers in this process, synchronously, in subscription order.

    Exact subjects are found in a dict; wildcard patterns are compiled once, when subscribed. A
    handler that raises is logged and the others still get the event.
    """

    def __init__(self) -> None:
        self._exact: dict[str, list[_Exact]] = {}
        self._wild: list[_Wild] = []
        self._subscribed = 0  # wildcard subscriptions so far: their order of delivery
        # Wildcard patterns of one endpoint's objects (``*.inventory/device.*``) by that endpoint's
        # token: an event is matched only against its own endpoint's patterns and the others.
        self._by_endpoint: dict[str, list[_Wild]] = {}
        # An endpoint's patterns and the others, in subscription order: made on the first event of
        # that endpoint after the subscriptions last changed.
        self._merged: dict[str, list[_Wild]] = {}

    def publish(self, subject: str, event: Event) -> None:
        for entry in self._exact.get(subject, ()):
            self._deliver(entry.handler, subject, event)
        wild = self._wild
        if self._by_endpoint:
            tokens = subject.split(".")
            if len(tokens) == 3 and tokens[1] in self._by_endpoint:
                wild = self._merged.get(tokens[1]) or self._merge(tokens[1])
        for _, compiled, handler in wild:
            if compiled is None or compiled.fullmatch(subject):
                self._deliver(handler, subject, event)

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        compiled = _compile(pattern)
        # Lists are replaced, never changed in place: a publish in progress keeps the list it has.
        if compiled is None:
            entry = _Exact(handler)
            self._exact[pattern] = [*self._exact.get(pattern, ()), entry]
            return lambda: self._drop_exact(pattern, entry)
        self._subscribed += 1
        self._merged = {}
        endpoint = _endpoint_token(pattern)
        # ">" matches every subject, "*.x.*" every subject it is matched against (those of x).
        every = pattern == ">" or (endpoint is not None and pattern.startswith("*.") and pattern.endswith(".*"))
        wild = (self._subscribed, None if every else compiled, handler)
        if endpoint is not None:
            self._by_endpoint[endpoint] = [*self._by_endpoint.get(endpoint, ()), wild]
            return lambda: self._drop_endpoint(endpoint, wild)
        self._wild = [*self._wild, wild]
        return lambda: self._drop_wild(wild)

    def _merge(self, endpoint: str) -> list[_Wild]:
        merged = sorted([*self._by_endpoint[endpoint], *self._wild], key=_order)
        self._merged[endpoint] = merged
        return merged

    def _drop_endpoint(self, endpoint: str, wild: _Wild) -> None:
        self._merged = {}
        remaining = [w for w in self._by_endpoint.get(endpoint, ()) if w is not wild]
        if remaining:
            self._by_endpoint[endpoint] = remaining
        else:
            self._by_endpoint.pop(endpoint, None)

    def _drop_exact(self, pattern: str, entry: _Exact) -> None:
        remaining = [e for e in self._exact.get(pattern, ()) if e is not entry]
        if remaining:
            self._exact[pattern] = remaining
        else:
            self._exact.pop(pattern, None)

    def _drop_wild(self, wild: _Wild) -> None:
        self._merged = {}
        self._wild = [w for w in self._wild if w is not wild]

    @staticmethod
    def _deliver(handler: Handler, subject: str, event: Event) -> None:
        try:
            handler(subject, event)
        except Exception:
            logger.error("event handler for %s failed", subject, exc_info=True)
