"""The one timestamp form: RFC 3339, UTC, whole seconds, ``Z``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flowbus import iso, iso_ms, now_iso

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.mark.parametrize(
    "moment",
    [
        1499678630,
        1499678630.999,
        datetime(2017, 7, 10, 9, 23, 50, 999999, tzinfo=UTC),
        datetime(2017, 7, 10, 11, 23, 50, tzinfo=timezone(timedelta(hours=2))),
        datetime(2017, 7, 10, 9, 23, 50),
    ],
    ids=["epoch", "epoch-fraction", "utc-fraction", "offset", "naive-is-utc"],
)
def test_iso_is_the_seed_form(moment: datetime | float) -> None:
    """Epoch seconds and datetimes, aware or naive (UTC), all give the seed's form; fractions go."""
    assert iso(moment) == "2017-07-10T09:23:50Z"


def test_now_iso_is_now_in_that_form() -> None:
    before = iso(time.time())
    stamp = now_iso()
    assert STAMP.fullmatch(stamp) and before <= stamp <= iso(time.time())


def test_iso_ms_writes_the_millisecond() -> None:
    """iso_ms: the same form, to the millisecond, truncated (never rounded up to the next second)."""
    assert iso_ms(1499678630.1239) == "2017-07-10T09:23:50.123Z"
    assert iso_ms(1499678630.9999) == "2017-07-10T09:23:50.999Z"
    assert iso_ms(1499678630) == "2017-07-10T09:23:50.000Z"
