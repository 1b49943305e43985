"""The rules of a websocket handshake, for both websocket entries (no I/O here).

Who may open a connection (:class:`Handshake`: shutting down, Origin, Host), how many may be open
(:class:`Connections`, one counter shared by the websocket port and the gateway's ``/ws``), and
what the handshake says of the connection's messages (:func:`connection_defaults`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from flowbus.config import Settings
from flowbus.hosts import REFUSED as HOST_REFUSED, HostCheck
from flowbus.protocol import normalize_endpoint

__all__ = [
    "HOST_NOT_ALLOWED",
    "ORIGIN_REFUSED",
    "SHUTTING_DOWN",
    "TOO_MANY",
    "Connections",
    "Handshake",
    "Refusal",
    "connection_defaults",
    "origin_allowed",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """The HTTP answer to a handshake that must not open."""

    status: int
    text: str


SHUTTING_DOWN = Refusal(503, "The bus is shutting down\n")
TOO_MANY = Refusal(503, "Too many connections\n")
ORIGIN_REFUSED = Refusal(403, "Origin not allowed\n")
HOST_NOT_ALLOWED = Refusal(403, HOST_REFUSED + "\n")


class Connections:
    """Open websocket connections of every entry, and handshakes in progress, against one cap.

    An entry :meth:`take` s a place when a handshake starts and :meth:`release` s it when the
    handshake is refused or the connection ends.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def take(self) -> bool:
        """Take a place; False (and nothing taken) if the cap is reached."""
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def release(self) -> None:
        """Give back a place taken by :meth:`take`."""
        self.count -= 1


class Handshake:
    """Judges a websocket handshake by the bus's settings.

    Args:
        settings: the bus's settings (``allowed_origins``, and without authentication its names).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hosts = HostCheck(settings.allowed_hosts, settings.host) if settings.no_auth else None

    def refusal(self, closing: bool, origin: str | None, host: str | None) -> Refusal | None:
        """The answer to a handshake that must not open, or None (the connection cap is not judged here)."""
        if closing:
            return SHUTTING_DOWN
        if not origin_allowed(origin, host, self.settings):
            return ORIGIN_REFUSED
        if self._hosts is not None and not self._hosts(host):
            return HOST_NOT_ALLOWED
        return None


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


def connection_defaults(path: str, headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Read the default endpoint and token of a connection from its handshake.

    Args:
        path: the request target after the entry's prefix, e.g. ``/inventory/device?token=...``.
        headers: the handshake headers.

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
