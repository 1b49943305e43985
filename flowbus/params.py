"""LIST and INDEX parameters: paging, sorting, exact filters and search terms.

``Query.from_parameters`` reads the ``parameters`` of a request (already a dict) and
validates it; the store turns a ``Query`` into its own query language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flowbus.errors import InvalidRequest

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "RESERVED", "Query", "check_field_name"]

DEFAULT_LIMIT = 30
MAX_LIMIT = 1000
RESERVED = frozenset({"limit", "page", "offset", "sort", "q"})
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_field_name(name: str) -> str:
    """Return ``name`` if it can name a top-level field, else raise InvalidRequest."""
    if not _FIELD.fullmatch(name):
        raise InvalidRequest(f"Invalid field name {name[:64]!r}")
    return name


@dataclass(slots=True, frozen=True)
class Query:
    """What a LIST or INDEX asks of a collection."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort: str | None = None
    descending: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    q: str | None = None

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> Query:
        """Build a query from request parameters.

        Raises:
            InvalidRequest: a bad limit, page, offset or sort value, or a bad filter name.
        """
        limit = _int_param(parameters, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        if "offset" in parameters:
            offset = _int_param(parameters, "offset", 0, 0, None)
        else:
            offset = _int_param(parameters, "page", 0, 0, None) * limit
        sort, descending = _sort_param(parameters.get("sort"))
        q = parameters.get("q")
        if q is not None and not isinstance(q, str):
            raise InvalidRequest("'q' must be a string")
        filters = {check_field_name(str(k)): v for k, v in parameters.items() if k not in RESERVED}
        return cls(limit, offset, sort, descending, filters, q or None)


def _int_param(params: dict[str, Any], name: str, default: int, low: int, high: int | None) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"'{name}' must be an integer") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequest(f"'{name}' must be {bound}")
    return number


def _sort_param(value: Any) -> tuple[str | None, bool]:
    if value is None or value == "":
        return None, False
    if not isinstance(value, str):
        raise InvalidRequest("'sort' must be a field name, optionally prefixed by '-'")
    descending = value.startswith("-")
    return check_field_name(value.lstrip("-+")), descending
