"""Storage: the :class:`Store` seam and its embedded SQLite implementation."""

from flowbus.store.base import Delete, Insert, Patch, Prepare, Store, Write
from flowbus.store.sqlite import SQLiteStore

__all__ = ["Delete", "Insert", "Patch", "Prepare", "SQLiteStore", "Store", "Write"]
