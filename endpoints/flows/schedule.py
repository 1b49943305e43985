"""Cron schedules in a time zone: standard 5-field cron and the 6/7-field Quartz form.

``0 2 * * *`` and ``? 0 2 ? * *`` (seconds first, ``?`` for "no specific value") both mean every
day at 02:00 in the schedule's time zone. In the Quartz form a seconds field of ``?`` or ``*``
means 0 and the 7th field (the year) may only be ``*`` or ``?``. ``?`` is allowed in the
day-of-month and day-of-week fields only, where it means ``*``. The days of the week are
numbered as each form does: 0 (or 7) is Sunday in the 5-field form, while the Quartz form
counts 1 (Sunday) to 7 (Saturday), so ``0 0 12 ? * 2`` is Mondays at noon and ``6#3`` the
third Friday; names (``MON``) mean the same in both.

Daylight saving time is the zone's: a schedule at 02:30 on the night the clocks skip that hour
fires at the first moment after it, and a schedule with a fixed hour fires once on the night an
hour repeats (at its first occurrence); one whose hour field has a ``*`` fires in both.

A schedule that never fires (``0 0 30 2 *``), or whose next firing is further than the bound of
every flow duration (366 days, :mod:`endpoints.flows.durations`), is refused when a flow or a
job is written (:meth:`Schedule.check_bound`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from endpoints.flows.durations import MAX_SECONDS

__all__ = ["Schedule", "zone"]


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: there is no such zone.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


class Schedule:
    """A cron expression in a time zone.

    Raises:
        ValueError: the expression or the zone is not valid; the message says which and why.
    """

    __slots__ = ("_cron", "_fixed_hour", "_seconds", "expression", "zone")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = expression
        self.zone = zone(timezone)
        self._cron, self._seconds = _normalized(expression)
        try:
            croniter(self._cron, second_at_beginning=self._seconds)
        except (CroniterError, ValueError, KeyError) as exc:
            raise ValueError(f"bad cron expression {expression!r}: {_reason(exc)}") from None
        hours = self._cron.split()[2 if self._seconds else 1]
        self._fixed_hour = "*" not in hours

    def next_after(self, moment: datetime) -> datetime:
        """The first time after ``moment`` (an aware datetime) that the schedule fires, in UTC."""
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        cron = croniter(self._cron, moment.astimezone(self.zone), second_at_beginning=self._seconds)
        try:
            fire: datetime = cron.get_next(datetime)
            while self._fixed_hour and _repeated(fire):
                fire = cron.get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"bad cron expression {self.expression!r}: it never fires") from None
        return fire.astimezone(UTC)

    def check_bound(self, moment: datetime) -> None:
        """Check that the schedule fires within the bound of every duration
        (:data:`~endpoints.flows.durations.MAX_SECONDS`) after ``moment``.

        Raises:
            ValueError: it never fires, or not that soon.
        """
        if (self.next_after(moment) - moment).total_seconds() > MAX_SECONDS:
            days = MAX_SECONDS // 86400
            raise ValueError(f"bad cron expression {self.expression!r}: it does not fire within {days} days")


def _normalized(expression: str) -> tuple[str, bool]:
    """The expression as croniter reads it, and whether it has a seconds field (first)."""
    if not isinstance(expression, str):
        raise ValueError("a cron expression must be a string")
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(_days(fields, expression)), False
    if len(fields) not in (6, 7):
        raise ValueError(
            f"bad cron expression {expression!r}: {len(fields)} fields, expected 5 (or 6-7, seconds first)"
        )
    if len(fields) == 7:
        if fields[6] not in ("*", "?"):
            raise ValueError(f"bad cron expression {expression!r}: only '*' or '?' is supported as the year")
        fields = fields[:6]
    seconds = "0" if fields[0] in ("?", "*") else fields[0]
    days = _days(fields[1:], expression)
    days[4] = _quartz_days_of_week(days[4], expression)
    return " ".join([seconds, *days]), True


def _days(fields: list[str], expression: str) -> list[str]:
    """The 5 fields from the minute on, ``?`` (day of month or week only) read as ``*``."""
    for index, text in enumerate(fields):
        if text == "?" and index not in (2, 4):
            raise ValueError(f"bad cron expression {expression!r}: '?' only as the day of the month or week")
    return ["*" if text == "?" else text for text in fields]


def _quartz_days_of_week(text: str, expression: str) -> str:
    """The day-of-week field of the Quartz form as croniter reads it: Quartz numbers the days
    1 (Sunday) to 7 (Saturday), croniter 0 (Sunday) to 6. Names (``MON``), steps (after ``/``)
    and the nth weekday of the month (after ``#``) keep their meaning; only day numbers move."""
    items = []
    for item in text.split(","):
        days, slash, step = item.partition("/")
        days, hash_, nth = days.partition("#")
        days = "-".join(_quartz_day(part, expression) for part in days.split("-"))
        items.append(f"{days}{hash_}{nth}{slash}{step}")
    return ",".join(items)


def _quartz_day(part: str, expression: str) -> str:
    if not part.isdigit():
        return part  # a name, '*' or '?': croniter reads them as Quartz does
    if not 1 <= int(part) <= 7:
        raise ValueError(
            f"bad cron expression {expression!r}: day of the week {part} is out of range "
            "(1-7, 1 = Sunday, in the form with seconds)"
        )
    return str(int(part) - 1)


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "out of range" in text:
        return "a value is out of range"
    return "not a cron expression" if not text or "acceptable" in text else text


def _repeated(fire: datetime) -> bool:
    """Whether ``fire`` is the second occurrence of a local time (the clocks went back)."""
    first = fire.replace(fold=0)
    return fire.fold == 1 and first.utcoffset() != fire.utcoffset() and first.astimezone(UTC) < fire.astimezone(UTC)
