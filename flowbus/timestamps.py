"""Timestamps as the bus stores and answers them.

One form everywhere: RFC 3339 in UTC, to the whole second, with ``Z``
(``2017-07-10T09:23:50Z``), as every object's ``created`` and ``updated`` and a token's
``expires`` have always been.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["FORMAT", "iso", "now_iso"]

FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""The ``strftime`` form of a timestamp, for a moment in UTC."""

_now: tuple[int, str] = (-1, "")  # the second last formatted by now_iso, and its text


def iso(moment: datetime | float) -> str:
    """``moment`` as a timestamp; fractions of a second are dropped.

    Args:
        moment: an aware datetime (a naive one is taken as UTC), or seconds since the epoch.
    """
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime(FORMAT)
    return time.strftime(FORMAT, time.gmtime(moment))


def now_iso() -> str:
    """The current time as a timestamp, formatted once per second (every write is stamped)."""
    global _now
    second = int(time.time())
    if second != _now[0]:
        _now = (second, time.strftime(FORMAT, time.gmtime(second)))
    return _now[1]
