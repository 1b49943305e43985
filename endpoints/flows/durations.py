"""The one bound on every duration of a flow: a wait's ``seconds``, a state's ``timeout``, a
retry's delay, and how far ahead a schedule's next firing may be.

A duration is a number of seconds from 0 to :data:`MAX_SECONDS` (366 days: a year, leap or not).
CREATE and UPDATE of a flow refuse a literal beyond it (INVALID_DATA naming the field); a value
known only when the execution runs (an expression's, or one of a flow stored before the bound)
is checked when evaluated, and one out of bounds is the state's error. The bound is a constant,
not a setting: a definition that passes on one bus passes on every bus.
"""

from __future__ import annotations

import math
from typing import Any

from flowbus import InvalidData

__all__ = ["MAX_SECONDS", "seconds", "within_bound"]

MAX_SECONDS = 366 * 86400
"""The longest duration, in seconds, a flow may give: 366 days."""


def within_bound(value: Any, *, positive: bool = False) -> bool:
    """Whether ``value`` is a number of seconds within the bound (> 0 when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not math.isfinite(value) or value > MAX_SECONDS:
        return False
    return value > 0 if positive else value >= 0


def seconds(value: Any, name: str, *, positive: bool = False) -> float:
    """``value`` as a duration, checked as it is evaluated.

    Raises:
        InvalidData: not a number, negative (or 0 when ``positive``), not finite, or beyond the bound.
    """
    if not within_bound(value, positive=positive):
        low = "above 0" if positive else "from 0"
        raise InvalidData(f"'{name}' must be a number of seconds {low} to {MAX_SECONDS}, not {value!r}")
    return float(value)
