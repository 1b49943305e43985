"""The embedded store: one SQLite file in WAL mode, one writer with group commit.

Writes are validated on the event loop (their ``prepare`` runs there), then queued and applied
in batches: the writer thread takes everything queued so far, applies the writes one after the
other in one transaction and commits the batch once. A refused write (CONFLICT, DO_NOT_EXIST)
refuses before it writes, so it undoes nothing of the others; a write that fails any other way
makes the batch run again with a savepoint per write. Every caller is answered only after that
commit, so an acknowledged write survives ``kill -9``; with ``synchronous=FULL`` (the default)
it survives power loss too. Many concurrent writers share one commit instead of paying for one
each.

A patch is prepared against the version of the object it read, and the writer makes it only if
the object is still at that version (compare and set); when another writer came in between, the
patch is read, merged and validated again. Every write also records its change in the
``changes`` table in the same transaction: the change log, whose ``seq`` grows in commit order
(there is one writer per database file at a time: SQLite's write lock).

The writer owns a plain ``sqlite3`` connection in a thread of its own, which drives itself:
the writes of each turn of the event loop reach it as one item of a thread-safe queue, and as
soon as one batch is committed it takes the next, without waiting for the event loop; only the
answers go back through the loop. Reads go through ``aiosqlite`` on their own connection and
never wait for the writer (WAL lets readers and the writer run side by side).

SQLite has no way to tell one process that another committed:
:meth:`SQLiteStore.wait_changed` wakes at once for this process's commits, and finds other
processes' by reading the change log's last ``seq`` every :data:`POLL` seconds, only while
somebody waits.

The modules, by concept: :mod:`.writer` (the connection and thread that write, group commit),
:mod:`.objects` (each write as an op the writer runs), :mod:`.changes` (the change log),
:mod:`.search` (reads: pages, filters, sort, full-text search, namespaces) and :mod:`.store`
(:class:`SQLiteStore`, which puts them together).
"""

from flowbus.store.sqlite.changes import POLL
from flowbus.store.sqlite.store import SQLiteStore

__all__ = ["POLL", "SQLiteStore"]
