"""LIST and INDEX parameters: paging, sorting, exact filters and search terms.

``Query.from_parameters`` reads the ``parameters`` of a request (already a dict) and
validates it; the store turns a ``Query`` into its own query language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flowbus.errors import InvalidRequest

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_FILTERS",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MAX_PAGE_BYTES",
    "RESERVED",
    "Query",
    "check_field_name",
]

DEFAULT_LIMIT = 30
MAX_LIMIT = 1000
MAX_OFFSET = 2**63 - 1
MAX_FILTERS = 64
"""Filters one LIST or INDEX may give: each is a clause of the query, and a database bounds
how deep a query's expression may grow."""
MAX_PAGE_BYTES = 8 << 20
"""The JSON a page of LIST or INDEX carries at most: a page whose objects pass it is cut
short after the object that passes it (``page.truncated`` says so)."""
RESERVED = frozenset({"limit", "page", "offset", "sort", "q"})
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_field_name(name: str) -> str:
    """Return ``name`` if it can name a top-level field, else raise InvalidRequest."""
    if not _FIELD.fullmatch(name):
        raise InvalidRequest(f"Invalid field name {name[:64]!r}")
    return name


@dataclass(slots=True, frozen=True)
class Query:
    """What a LIST or INDEX asks of a collection.

    ``after`` pages by cursor instead of by offset: ``""`` for the first page, then the cursor
    (``flowbus.store.cursor_of``) of the last object of the previous page, made with the same
    ``sort`` and ``descending``; the page then holds the objects that come strictly after it in
    the order of ``sort`` with the object id breaking ties (by id alone without ``sort``).
    Without it (None), ties are broken in the order the objects were stored. Only code inside
    the bus sets it: it is never read from a request's parameters.
    """

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort: str | None = None
    descending: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    q: str | None = None
    max_bytes: int = MAX_PAGE_BYTES
    after: str | None = None

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> Query:
        """Build a query from request parameters.

        Raises:
            InvalidRequest: a bad limit, page, offset or sort value, or a bad filter name.
        """
        limit = _int_param(parameters, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        if "offset" in parameters:
            offset = _int_param(parameters, "offset", 0, 0, MAX_OFFSET)
        else:
            offset = _int_param(parameters, "page", 0, 0, MAX_OFFSET) * limit
            if offset > MAX_OFFSET:
                raise InvalidRequest("'page' is too large")
        sort, descending = _sort_param(parameters.get("sort"))
        q = parameters.get("q")
        if q is not None and not isinstance(q, str):
            raise InvalidRequest("'q' must be a string")
        filters = {check_field_name(str(k)): v for k, v in parameters.items() if k not in RESERVED}
        if len(filters) > MAX_FILTERS:
            raise InvalidRequest(f"At most {MAX_FILTERS} filters may be given")
        return cls(limit, offset, sort, descending, filters, q or None)


def _int_param(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """Read a non-negative integer given as a JSON number or as a string of ASCII digits."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if type(value) is int:
        number = value
    elif type(value) is float and value.is_integer():
        number = int(value)
    elif type(value) is str and value.isascii() and value.isdigit():
        if len(value) > 19:  # beyond any bound, and too long for int() to be cheap
            raise InvalidRequest(f"'{name}' must be between {low} and {high}")
        number = int(value)
    else:
        raise InvalidRequest(f"'{name}' must be an integer")
    if number < low or number > high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}")
    return number


def _sort_param(value: Any) -> tuple[str | None, bool]:
    if value is None or value == "":
        return None, False
    if not isinstance(value, str):
        raise InvalidRequest("'sort' must be a field name, optionally prefixed by '-'")
    descending = value[0] == "-"
    return check_field_name(value[1:] if value[0] in "-+" else value), descending
