"""Cron schedules: the 5-field and Quartz forms, time zones and their DST changes, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from endpoints.flows.schedule import Schedule, zone


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def fires(schedule: Schedule, start: str, count: int) -> list[str]:
    moment, found = at(start), []
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment.isoformat())
    return found


@pytest.mark.parametrize("expression", ["0 2 * * *", "? 0 2 ? * *", "* 0 2 * * ?", "0 0 2 * * *", "? 0 2 ? * * *"])
def test_every_day_at_two_in_both_forms(expression: str) -> None:
    schedule = Schedule(expression)
    assert fires(schedule, "2026-01-01T03:00:00+00:00", 2) == ["2026-01-02T02:00:00+00:00", "2026-01-03T02:00:00+00:00"]


def test_the_quartz_seconds_field_counts() -> None:
    assert Schedule("15 0 2 ? * *").next_after(at("2026-01-01T02:00:00+00:00")) == at("2026-01-01T02:00:15+00:00")


def test_next_is_strictly_after_and_in_utc() -> None:
    fire = Schedule("*/15 * * * *").next_after(at("2026-01-01T12:15:00+01:00"))
    assert fire == at("2026-01-01T11:30:00+00:00")
    assert fire.tzinfo is UTC


def test_day_of_week_with_question_mark_for_the_day_of_month() -> None:
    # 2026-01-01 is a Thursday; MON-FRI at 09:30 in the 6-field form.
    schedule = Schedule("0 30 9 ? * MON-FRI")
    assert fires(schedule, "2026-01-02T10:00:00+00:00", 2) == ["2026-01-05T09:30:00+00:00", "2026-01-06T09:30:00+00:00"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Quartz numbers the days 1 (Sunday) to 7 (Saturday); 2026-01-01 is a Thursday.
        ("0 0 12 ? * 2", ["2026-01-05", "2026-01-12"]),  # Monday
        ("0 0 12 ? * 1", ["2026-01-04", "2026-01-11"]),  # Sunday
        ("0 0 12 ? * 7", ["2026-01-03", "2026-01-10"]),  # Saturday
        ("0 0 12 ? * MON", ["2026-01-05", "2026-01-12"]),  # names were always right
        ("0 0 12 ? * 6#3", ["2026-01-16", "2026-02-20"]),  # the third Friday
        ("0 0 12 ? * 2-6", ["2026-01-01", "2026-01-02", "2026-01-05"]),  # Monday to Friday
        ("0 0 12 ? * 1,7", ["2026-01-03", "2026-01-04", "2026-01-10"]),  # the weekend
        ("0 0 12 ? * 7-1", ["2026-01-03", "2026-01-04", "2026-01-10"]),  # Saturday to Sunday
        ("0 0 12 ? * MON-6", ["2026-01-01", "2026-01-02", "2026-01-05"]),  # MON to Friday
        ("0 0 12 ? * 2/3", ["2026-01-01", "2026-01-05", "2026-01-08"]),  # Monday and Thursday
        ("0 0 12 ? * 2 *", ["2026-01-05", "2026-01-12"]),  # with the year field
        ("0 12 * * 1", ["2026-01-05", "2026-01-12"]),  # standard cron: 1 is Monday there
    ],
)
def test_quartz_numbers_the_days_of_the_week_from_sunday(expression: str, expected: list[str]) -> None:
    days = [fire[:10] for fire in fires(Schedule(expression), "2026-01-01T00:00:00+00:00", len(expected))]
    assert days == expected


@pytest.mark.parametrize("expression", ["0 0 12 ? * 0", "0 0 12 ? * 8", "0 0 12 ? * 0-3", "0 0 12 ? * 8#2"])
def test_quartz_days_of_the_week_out_of_one_to_seven_are_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Schedule(expression)


def test_local_time_in_a_zone() -> None:
    schedule = Schedule("0 2 * * *", "Europe/Paris")
    assert schedule.next_after(at("2026-01-01T00:00:00+00:00")) == at("2026-01-01T01:00:00+00:00")


def test_dst_starts_two_oclock_local_follows_the_offset() -> None:
    """Los Angeles moves from PST (-8) to PDT (-7) on 2026-03-08 at 02:00, which does not exist that day."""
    schedule = Schedule("0 2 * * *", "America/Los_Angeles")
    assert fires(schedule, "2026-03-06T12:00:00+00:00", 3) == [
        "2026-03-07T10:00:00+00:00",  # 02:00 PST
        "2026-03-08T10:00:00+00:00",  # 03:00 PDT, the first moment after the skipped 02:00
        "2026-03-09T09:00:00+00:00",  # 02:00 PDT
    ]


def test_dst_ends_a_fixed_time_fires_once_in_the_repeated_hour() -> None:
    """On 2026-11-01 Los Angeles goes back from 02:00 PDT to 01:00 PST: 01:30 happens twice."""
    schedule = Schedule("30 1 * * *", "America/Los_Angeles")
    assert fires(schedule, "2026-10-31T12:00:00+00:00", 3) == [
        "2026-11-01T08:30:00+00:00",  # 01:30 PDT
        "2026-11-02T09:30:00+00:00",  # 01:30 PST the next day
        "2026-11-03T09:30:00+00:00",
    ]


def test_dst_ends_an_hourly_schedule_fires_every_real_hour() -> None:
    schedule = Schedule("0 * * * *", "America/Los_Angeles")
    assert fires(schedule, "2026-11-01T07:30:00+00:00", 3) == [
        "2026-11-01T08:00:00+00:00",  # 01:00 PDT
        "2026-11-01T09:00:00+00:00",  # 01:00 PST
        "2026-11-01T10:00:00+00:00",  # 02:00 PST
    ]


def test_dst_ends_two_oclock_local() -> None:
    schedule = Schedule("0 2 * * *", "America/Los_Angeles")
    assert fires(schedule, "2026-10-31T12:00:00+00:00", 2) == ["2026-11-01T10:00:00+00:00", "2026-11-02T10:00:00+00:00"]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * *", "3 fields"),
        ("* * * *", "4 fields"),
        ("0 0 1 1 1 1 * *", "8 fields"),
        ("", "0 fields"),
        ("61 * * * *", "out of range"),
        ("0 25 * * *", "out of range"),
        ("0 0 32 * *", "out of range"),
        ("0 0 * 13 *", "out of range"),
        ("0 61 2 ? * *", "out of range"),
        ("a b c d e", "not a cron expression"),
        ("0 0 2 ? * * 2027", "year"),
        ("? * * * *", "'?' only"),
        ("0 ? 2 * * *", "'?' only"),
    ],
)
def test_bad_expressions_are_refused_saying_why(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match="bad cron expression") as info:
        Schedule(expression)
    assert repr(expression) in str(info.value)
    assert reason in str(info.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "UTC+2", "../etc/passwd"])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        Schedule("0 2 * * *", name)
    with pytest.raises(ValueError, match="unknown time zone"):
        zone(name)


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        Schedule("0 2 * * *").next_after(datetime(2026, 1, 1))


def test_any_aware_moment_is_accepted() -> None:
    moment = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert Schedule("0 7 * * *").next_after(moment) == at("2026-01-01T07:00:00+00:00")
