"""Storage: the :class:`Store` seam and its embedded SQLite implementation."""

from flowbus.store.base import Prepare, Store
from flowbus.store.sqlite import SQLiteStore

__all__ = ["Prepare", "SQLiteStore", "Store"]
