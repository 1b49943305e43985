"""Paging by cursor (keyset paging), and :func:`every`, which reads every page with it.

Paging by offset counts rows: a row inserted or deleted before the offset between two pages
shifts the rest, and the next page repeats or skips one. A cursor names a place in the order
instead: the sort value and the id of the last object of a page (:func:`cursor_of`). The next
page (``Query(after=cursor)``) starts strictly after that place, in the order of the query's
sort key with the object id breaking ties, so what was inserted or deleted meanwhile moves
nothing: an object that stays is given exactly once, provided its sort value does not change
between the pages (an object whose sort value changes moves in the order, and may be met again
or not at all). Without ``sort`` the order is by id alone, which never changes.

The first page of a paging by cursor is asked with ``after=""`` (:data:`START`): it is in the
same order as the pages that follow (a query without ``after`` pages by offset, and breaks ties
in the order the objects were stored, not by id).

A cursor is opaque to its user: base64url of a small JSON array made of the sort field, the
direction, the id and (when the object has the field) the sort value.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from typing import Any

import orjson

from flowbus.errors import InvalidRequest
from flowbus.params import Query
from flowbus.store.base import Store

__all__ = ["EVERY_PAGE", "START", "Cursor", "after_sql", "cursor_of", "every", "read_cursor"]

START = ""
"""The ``after`` of the first page of a paging by cursor."""
EVERY_PAGE = 500
"""Objects :func:`every` reads at a time."""
_UNBOUNDED = 1 << 62


def cursor_of(query: Query, obj: dict[str, Any]) -> str:
    """The cursor of ``obj`` (an object of a page ``query`` answered): pass it as ``after`` of the
    same query to get the next page."""
    place: list[Any] = [query.sort, query.descending, obj["id"]]
    if query.sort is not None and query.sort in obj:
        place.append(obj[query.sort])
    return base64.urlsafe_b64encode(orjson.dumps(place)).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A cursor as a store reads it.

    Attributes:
        objectid: the id of the object it was made of; None for :data:`START` (the page starts
            with the first object).
        value: the JSON text of that object's sort value; None when it had no such field (or
            the query has no sort).
    """

    objectid: str | None
    value: str | None


def read_cursor(query: Query) -> Cursor | None:
    """The cursor ``query.after`` names, or None when the query pages by offset.

    Raises:
        InvalidRequest: not a cursor, or one made for another sort or direction.
    """
    if query.after is None:
        return None
    if query.after == START:
        return Cursor(None, None)
    try:
        text = query.after + "=" * (-len(query.after) % 4)
        place = orjson.loads(base64.urlsafe_b64decode(text.encode("ascii")))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise InvalidRequest("'after' is not a cursor") from None
    if not isinstance(place, list) or len(place) not in (3, 4) or not isinstance(place[2], str):
        raise InvalidRequest("'after' is not a cursor")
    if place[0] != query.sort or place[1] is not query.descending or (len(place) == 4 and query.sort is None):
        raise InvalidRequest("'after' is the cursor of another order")
    return Cursor(place[2], orjson.dumps(place[3]).decode() if len(place) == 4 else None)


def after_sql(
    key: str | None, ident: str, value: str | None, objectid: str, *, descending: bool, nulls_first: bool
) -> str:
    """The SQL condition of the rows that come after a cursor, in the order ``key, ident`` (both
    ascending, or both descending), NULL keys first or last as the database orders them.

    Args:
        key: the SQL of the sort value, or None when the order is by ``ident`` alone.
        ident: the SQL of the object id.
        value: the SQL of the cursor's sort value, or None when it is NULL to the database.
        objectid: the SQL of the cursor's id.
        descending: the order's direction.
        nulls_first: whether the rows with a NULL key come before the others in this order.

    ``value`` and ``objectid`` each appear at most once, ``value`` first, so that positional
    placeholders (``?``) take their arguments in that order: the value (unless None), the id.
    """
    later = "<" if descending else ">"
    if key is None:
        return f"{ident} {later} {objectid}"
    if value is None:
        among_nulls = f"({key} IS NULL AND {ident} {later} {objectid})"
        return f"({among_nulls} OR {key} IS NOT NULL)" if nulls_first else among_nulls
    # a row value compares as (key, ident) would sort, and is NULL when the key is NULL
    after = f"({key}, {ident}) {later} ({value}, {objectid})"
    return after if nulls_first else f"({after} OR {key} IS NULL)"


async def every(
    store: Store,
    collection: str,
    namespace: str,
    filters: dict[str, Any] | None = None,
    *,
    sort: str | None = None,
    descending: bool = False,
    page: int = EVERY_PAGE,
) -> list[dict[str, Any]]:
    """Every object of ``collection`` in ``namespace`` matching ``filters`` (exact values), in the
    order of ``sort`` (ties by id; by id alone without it), read ``page`` objects at a time.

    Pages follow each other by cursor, so writes made meanwhile by anyone skip or repeat nothing
    (see the module's doc): each object present from the first page to the last is in the list
    exactly once, unless its ``sort`` value changed in between.
    """
    query = Query(
        limit=page, sort=sort, descending=descending, filters=filters or {}, max_bytes=_UNBOUNDED, after=START
    )
    found: list[dict[str, Any]] = []
    while True:
        items, _ = await store.query(collection, namespace, query)
        found += items
        if len(items) < page:  # no byte bound cuts the page short: a short one is the last
            return found
        query = replace(query, after=cursor_of(query, items[-1]))
