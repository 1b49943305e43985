"""Everything the flows application says to the store about executions, in one place.

An execution moves only by :meth:`Repository.transition`: a write conditional on the version
the caller read (``patch(..., expect=version, base=record)``), so that of two writers (two
tasks, two processes sharing one store) exactly one wins and the other gets ``Conflict``. The
repository also keeps the definitions as executions run them (revisions), and the namespaces
that hold executions.

**Its own commits on the change feed.** The engine acts on a commit of its own at once (it
settles waiters, arms timers, starts what follows), so the feed's event of that commit, when it
comes back, must be passed over. The repository remembers, per execution, the version it last
wrote and acted on, until the feed brings that version back: an event of that version or an
older one tells of nothing the engine has not seen (a later version was written on top of it),
and is passed over without decoding its record. The entry goes when its version (or a later
one) comes back, so what is kept is one number per execution whose latest commit here is still
on its way through the feed: there is no table of past commits to bound. (An event that never
comes, from a change log trimmed past a process that was paused, leaves its entry until the
execution's next change or the engine's stop.)
"""

from __future__ import annotations

import contextlib
from typing import Any

from endpoints.flows.cron import note_namespace
from endpoints.flows.model import EXECUTIONS, NAMESPACES, QUEUED, REVISIONS, every, no_text
from flowbus import Conflict, Event, Query, Store

__all__ = ["Repository"]

Key = tuple[str, str]
_MAX_LIMIT = 2**63 - 1  # a database's largest LIMIT


class Repository:
    """Reads and writes of ``flows/execution`` and ``flows/revision`` (see the module's text)."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._written: dict[Key, int] = {}
        self._namespaces: set[str] = set()

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the flow engine has not started")
        return self._store

    def open(self, store: Store) -> None:
        self._store = store

    def close(self) -> None:
        """Forget the commits whose events were still to come (the engine no longer listens)."""
        self._written.clear()

    # -- executions --------------------------------------------------------------------------

    async def get(self, namespace: str, objectid: str) -> dict[str, Any] | None:
        return await self.store.get(EXECUTIONS, namespace, objectid)

    async def insert(self, namespace: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store a new execution; the engine acts on it at once (its CREATED event is passed over)."""
        stored = await self.store.insert(EXECUTIONS, namespace, record, no_text)
        self._wrote(namespace, stored)
        return stored

    async def transition(
        self, namespace: str, record: dict[str, Any], changes: dict[str, Any], *, handled: bool = True
    ) -> dict[str, Any]:
        """Write ``changes`` on the execution as ``record`` has it (its version), and answer the
        record as committed.

        ``handled``: the caller acts on the commit itself, so its feed event is passed over;
        False for a change the engine learns of from the feed like any other (a tag, an answer).

        Raises:
            Conflict: another writer moved the execution since ``record`` was read.
            DoesNotExist: the execution is gone.
        """
        stored = await self.store.patch(
            EXECUTIONS, namespace, record["id"], changes, no_text, expect=record["version"], base=record
        )
        if handled:
            self._wrote(namespace, stored)
        return stored

    async def find(self, namespace: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Every execution of ``namespace`` matching ``filters`` (exact values), oldest first."""
        return await every(self.store, EXECUTIONS, namespace, filters)

    async def count(self, namespace: str, filters: dict[str, Any]) -> int:
        """How many executions of ``namespace`` match ``filters``."""
        _, total = await self.store.query(EXECUTIONS, namespace, Query(limit=1, filters=filters))
        return total

    async def queued(self, namespace: str, limit: int) -> list[dict[str, Any]]:
        """The oldest QUEUED executions of ``namespace``, at most ``limit``."""
        query = Query(limit=limit, sort="created", filters={"status": QUEUED})
        items, _ = await self.store.query(EXECUTIONS, namespace, query)
        return items

    async def page(
        self,
        namespace: str,
        filters: dict[str, Any],
        *,
        statuses: list[str],
        tags: list[str],
        limit: int,
        offset: int,
        oldest: bool,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the executions matching ``filters``, whose status is one of ``statuses``
        (any, when empty) and whose tags include all of ``tags``; newest first unless ``oldest``.
        Answers the page and the count of all that match."""
        if tags:
            return await self._tagged(namespace, filters, statuses, tags, limit, offset, oldest)
        if len(statuses) <= 1:
            query = Query(limit, offset, "created", not oldest, filters | _status(statuses[:1]))
            return await self.store.query(EXECUTIONS, namespace, query)
        # The store filters on one value: the first offset + limit of each status, merged.
        found: list[dict[str, Any]] = []
        total = 0
        for status in statuses:
            query = Query(min(offset + limit, _MAX_LIMIT), 0, "created", not oldest, filters | {"status": status})
            items, count = await self.store.query(EXECUTIONS, namespace, query)
            found.extend(items)
            total += count
        found.sort(key=_age, reverse=not oldest)
        return found[offset : offset + limit], total

    async def _tagged(
        self,
        namespace: str,
        filters: dict[str, Any],
        statuses: list[str],
        tags: list[str],
        limit: int,
        offset: int,
        oldest: bool,
    ) -> tuple[list[dict[str, Any]], int]:
        found: list[dict[str, Any]] = []
        for status in statuses or [""]:
            found.extend(await self.find(namespace, filters | _status([status] if status else [])))
        if len(statuses) > 1:
            found.sort(key=_age)
        wanted = set(tags)
        found = [r for r in found if wanted <= set(r.get("tags") or [])]
        if not oldest:
            found.reverse()
        return found[offset : offset + limit], len(found)

    # -- the feed events of its own commits -----------------------------------------------------

    def own(self, event: Event) -> bool:
        """Whether ``event`` (a stored change of an execution) tells of a commit made and acted on
        here, or of a version older than one: True means there is nothing in it to act on."""
        if not self._written or event.version is None or event.event == "DELETED":
            return False
        key = (event.namespace, event.objectid)
        written = self._written.get(key)
        if written is None:
            return False
        if event.version >= written:  # the latest commit made here is back (or was overtaken)
            del self._written[key]
        return event.version <= written

    @property
    def in_flight(self) -> int:
        """Executions whose latest commit made here has not come back from the feed yet."""
        return len(self._written)

    def _wrote(self, namespace: str, record: dict[str, Any]) -> None:
        key = (namespace, record["id"])
        self._written[key] = max(record["version"], self._written.get(key, 0))

    # -- revisions ---------------------------------------------------------------------------

    async def save_revision(self, snapshot: dict[str, Any]) -> None:
        """Store the definition a flow has now, under its revision id (once: it never changes)."""
        with contextlib.suppress(Conflict):  # another process stored the same snapshot
            await self.store.insert(REVISIONS, "", snapshot, no_text)

    async def revision(self, revision: str) -> dict[str, Any] | None:
        return await self.store.get(REVISIONS, "", revision)

    # -- namespaces --------------------------------------------------------------------------

    async def namespaces(self) -> list[str]:
        """The namespaces that hold executions (or flows): where recovery looks."""
        records = await every(self.store, NAMESPACES, "")
        self._namespaces.update(str(r.get("namespace", "")) for r in records)
        return sorted(self._namespaces)

    @property
    def known_namespaces(self) -> list[str]:
        """The namespaces seen so far: found at start, or written here since."""
        return sorted(self._namespaces)

    async def note_namespace(self, namespace: str) -> None:
        """Remember that ``namespace`` holds flows or executions (for recovery and schedules)."""
        if namespace not in self._namespaces:
            await note_namespace(self.store, namespace)
            self._namespaces.add(namespace)


def _status(statuses: list[str]) -> dict[str, Any]:
    return {"status": statuses[0]} if statuses else {}


def _age(record: dict[str, Any]) -> tuple[Any, Any]:
    return (record.get("created"), record.get("id"))
