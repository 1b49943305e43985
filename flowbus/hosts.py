"""The names a bus answers to: a guard against DNS rebinding while authentication is off.

A web page can point its own name at 127.0.0.1 once it has loaded ("DNS rebinding"). The
browser then sends that page's requests to a bus on the visitor's machine, as requests of the
page's own origin: no CORS check applies, and a GET carries no ``Origin``. Only ``Host`` still
names the page's site. A bus without authentication refuses such requests by that name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["REFUSED", "HostCheck"]

REFUSED = "Host not allowed: a bus without authentication answers to IP addresses, localhost and FLOWBUS_ALLOWED_HOSTS"

_REMEMBERED = 1024  # Host values whose verdict is kept; others are judged each time


class HostCheck:
    """Whether a request's ``Host`` header names this bus.

    Allowed: IP addresses, ``localhost`` and names under ``.localhost``, the bus's own ``host``
    setting, and ``allowed``: names, ``.example.com`` for that name and every name under it, or
    ``*`` for any. A request without ``Host`` (HTTP/1.0, not a browser) is allowed.
    """

    def __init__(self, allowed: Iterable[str], own: str = "") -> None:
        names = {_plain(name) for name in (*allowed, own) if name.strip()}
        self.any = "*" in names
        self._names = frozenset(name for name in names if not name.startswith("."))
        self._suffixes = tuple(name for name in names if name.startswith("."))
        self._verdicts: dict[str, bool] = {}

    def __call__(self, host: str | None) -> bool:
        if host is None or self.any:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._allowed(host)
            if len(self._verdicts) < _REMEMBERED:
                self._verdicts[host] = verdict
        return verdict

    def _allowed(self, host: str) -> bool:
        try:
            name = urlsplit(f"//{host}").hostname
        except ValueError:  # an unbalanced bracket
            return False
        if not name:
            return False
        name = _plain(name)
        if name == "localhost" or name.endswith(".localhost") or name in self._names:
            return True
        if any(name.endswith(suffix) or name == suffix[1:] for suffix in self._suffixes):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


def _plain(name: str) -> str:
    """A name as compared: lower case, without the root's trailing dot."""
    return name.strip().lower().rstrip(".")
