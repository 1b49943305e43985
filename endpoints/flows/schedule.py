"""Cron schedules in a time zone: standard 5-field cron and the 6/7-field Quartz form.

``0 2 * * *`` and ``? 0 2 ? * *`` (seconds first, ``?`` for "no specific value") both mean every
day at 02:00 in the schedule's time zone. The 7th Quartz field (the year) may only be ``*`` or
``?``. Daylight saving time is the zone's: a schedule at 02:30 on the night the clocks skip that
hour fires at the first moment after it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

__all__ = ["Schedule", "zone"]


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: there is no such zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


class Schedule:
    """A cron expression in a time zone.

    Raises:
        ValueError: the expression or the zone is not valid; the message says which.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = expression
        self.zone = zone(timezone)
        self._cron, self._seconds = _normalized(expression)
        if not croniter.is_valid(self._cron, second_at_beginning=self._seconds):
            raise ValueError(f"bad cron expression {expression!r}")

    def next_after(self, moment: datetime) -> datetime:
        """The first time after ``moment`` (aware) that the schedule fires, in UTC."""
        local = moment.astimezone(self.zone)
        cron = croniter(self._cron, local, second_at_beginning=self._seconds)
        fire: datetime = cron.get_next(datetime)
        return fire.astimezone(UTC)


def _normalized(expression: str) -> tuple[str, bool]:
    """The expression as croniter reads it, and whether it has a seconds field (first)."""
    if not isinstance(expression, str):
        raise ValueError("a cron expression must be a string")
    fields = expression.split()
    if len(fields) == 5:
        return " ".join("*" if f == "?" else f for f in fields), False
    if len(fields) not in (6, 7):
        raise ValueError(f"bad cron expression {expression!r}: 5 fields (or 6-7, seconds first) expected")
    if len(fields) == 7:
        if fields[6] not in ("*", "?"):
            raise ValueError(f"bad cron expression {expression!r}: only '*' is supported as the year")
        fields = fields[:6]
    seconds = "0" if fields[0] in ("?", "*") else fields[0]
    rest = ["*" if f == "?" else f for f in fields[1:]]
    return " ".join([seconds, *rest]), True
