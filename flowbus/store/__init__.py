"""Storage: the :class:`Store` seam, its embedded SQLite implementation, :func:`create_store`, and
:func:`every` (every object of a collection, read page after page by cursor)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowbus.store.base import Change, Checked, Delete, Get, Insert, Patch, Peekable, Prepare, Store, Write
from flowbus.store.cache import CachedStore
from flowbus.store.paging import cursor_of, every
from flowbus.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from flowbus.config import Settings

__all__ = [
    "CachedStore",
    "Change",
    "Checked",
    "Delete",
    "Get",
    "Insert",
    "Patch",
    "Peekable",
    "Prepare",
    "SQLiteStore",
    "Store",
    "Write",
    "create_store",
    "cursor_of",
    "every",
]


def create_store(settings: Settings, *, follow: bool = True) -> CachedStore:
    """The store ``settings.store`` names: empty for the SQLite file in the data dir, a
    ``postgresql://`` (or ``postgres://``) URL for PostgreSQL; its ``?schema=`` parameter picks
    the schema (default ``public``), the others go to the driver. Behind the read cache, which
    follows the store's change log itself unless ``follow`` is False (a change feed tells it
    of every change instead: :meth:`CachedStore.changed`).

    Raises:
        ValueError: a store that is neither.
    """
    if not settings.store:
        return CachedStore(
            SQLiteStore(settings.database, synchronous=settings.sync), settings.cache_bytes, follow=follow
        )
    parts = urlsplit(settings.store)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("store must be empty (the SQLite file in the data dir) or a postgresql:// URL")
    from flowbus.store.postgres import PostgresStore  # asyncpg is loaded only when it is used

    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for name, value in params if name == "schema"), "public")
    rest = urlencode([(name, value) for name, value in params if name != "schema"])
    inner = PostgresStore(urlunsplit(parts._replace(query=rest)), schema=schema)
    return CachedStore(inner, settings.cache_bytes, follow=follow)
