"""Timestamps as the bus stores and answers them.

One form: RFC 3339 in UTC with ``Z``. To the whole second (``2017-07-10T09:23:50Z``,
:func:`iso`, :func:`now_iso`) for every object's ``created`` and ``updated`` and a token's
``expires``; to the millisecond (``2017-07-10T09:23:50.123Z``, :func:`iso_ms`) where many
things happen within a second (a flow execution's history) or another product's API writes it so.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime

__all__ = ["FORMAT", "iso", "iso_ms", "now_iso"]

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


def iso_ms(moment: float) -> str:
    """``moment`` (seconds since the epoch) as a timestamp to the millisecond; each second is
    formatted once."""
    second, millisecond = divmod(int(moment * 1000), 1000)
    return f"{_second(second)}.{millisecond:03d}Z"


@functools.lru_cache(maxsize=64)
def _second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
