"""Everything the flows application says to the store about executions, in one place.

An execution moves only by :meth:`Repository.transition`: a write conditional on the version
the caller read (``patch(..., expect=version, base=record)``), so that of two writers (two
tasks, two processes sharing one store) exactly one wins and the other gets ``Conflict``. The
repository also keeps the definitions as executions run them (revisions), and knows the
namespaces that hold executions (``Store.namespaces``).

**Its own commits on the change feed.** The engine acts on a commit of its own at once (it
settles waiters, arms timers, starts what follows), so the feed's event of that commit must be
passed over. The repository remembers, per execution, the version it last wrote and acted on,
until the feed brings that version back: an event of that version or an older one tells of
nothing the engine has not seen (a later version was written on top of it), and is passed over
without decoding its record; a newer one is another writer's. The entry goes when its version
(or a later one) comes back. The feed may also bring a commit back before its writer hears that
it committed: an event of an execution that this process is writing, newer than what it wrote
so far, is held until the write ends, then judged by the version written (or, if the write
failed, acted on), in the order the events came. So what is kept is one number per execution
whose latest commit here is still on its way through the feed, and the few events newer than
it that came during a write: no table of past commits. (An event that never comes, from a
change log trimmed past a process that was paused, leaves its entry until the execution's next
change or the engine's stop.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from endpoints.flows.contexts import context_record
from endpoints.flows.model import CONTEXTS, EXECUTIONS, QUEUED, REVISIONS, no_text
from flowbus import Conflict, Event, Insert, Patch, Query, Store, every

__all__ = ["Repository"]

Key = tuple[str, str]
_MAX_LIMIT = 2**63 - 1  # a database's largest LIMIT


class Repository:
    """Reads and writes of ``flows/execution`` and ``flows/revision`` (see the module's text)."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._act: Callable[[Event], None] = _ignore
        self._written: dict[Key, int] = {}  # the version last written here, its event still to come
        self._writing: dict[Key, int] = {}  # writes in flight here, by execution
        self._held: dict[Key, list[Event]] = {}  # feed events that came during a write, in order
        self._namespaces: set[str] = set()

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the flow engine has not started")
        return self._store

    def open(self, store: Store, act: Callable[[Event], None]) -> None:
        """Read and write ``store``; ``act`` is what the engine does with a feed event that is
        not of its own commits, for those held during a write (see the module's text)."""
        self._store = store
        self._act = act

    def close(self) -> None:
        """Forget the commits whose events were still to come (the engine no longer listens)."""
        self._written.clear()
        self._held.clear()
        self._act = _ignore

    # -- executions --------------------------------------------------------------------------

    async def get(self, namespace: str, objectid: str) -> dict[str, Any] | None:
        return await self.store.get(EXECUTIONS, namespace, objectid)

    async def insert(self, namespace: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store a new execution, and the record that finds it by its context id, in one commit;
        the engine acts on it at once (its CREATED event is passed over)."""
        return await self._written_here(namespace, record["id"], self._insert(namespace, record))

    async def _insert(self, namespace: str, record: dict[str, Any]) -> dict[str, Any]:
        execution = Insert(EXECUTIONS, namespace, record, no_text)
        stored = await self.store.transaction([execution, context_record(namespace, record)])
        assert stored[0] is not None
        return stored[0]

    async def number(self, namespace: str, record: dict[str, Any], context_id: int) -> dict[str, Any]:
        """Give ``context_id`` to an execution stored before context ids (it has none), with the
        record that finds it, in one commit conditional on the version read.

        Raises:
            Conflict: another writer moved the execution since ``record`` was read.
        """
        numbered = {**record, "contextId": context_id}
        patch = Patch(EXECUTIONS, namespace, record["id"], {"contextId": context_id}, no_text, expect=record["version"])

        async def write() -> dict[str, Any]:
            stored = await self.store.transaction([patch, context_record(namespace, numbered)])
            assert stored[0] is not None
            return stored[0]

        return await self._written_here(namespace, record["id"], write())

    async def locate(self, context_id: int) -> tuple[str, str] | None:
        """The namespace and id of the execution numbered ``context_id``, or None."""
        found = await self.store.get(CONTEXTS, "", str(context_id))
        if found is None:
            return None
        return str(found["namespace"]), str(found["execution"])

    async def transition(
        self,
        namespace: str,
        record: dict[str, Any],
        changes: dict[str, Any],
        *,
        handled: bool = True,
        by: str | None = None,
    ) -> dict[str, Any]:
        """Write ``changes`` on the execution as ``record`` has it (its version), and answer the
        record as committed.

        ``handled``: the caller acts on the commit itself, so its feed event is passed over;
        False for a change the engine learns of from the feed like any other (a tag, an answer).
        ``by``: the user the change is made as, kept as ``modifiedBy``; the execution's own user
        (its ``owner``, as whom it runs) when not given.

        Raises:
            Conflict: another writer moved the execution since ``record`` was read.
            DoesNotExist: the execution is gone.
        """
        changes = {**changes, "modifiedBy": by or record.get("owner")}
        write = self.store.patch(
            EXECUTIONS, namespace, record["id"], changes, no_text, expect=record["version"], base=record
        )
        return await (self._written_here(namespace, record["id"], write) if handled else write)

    async def find(self, namespace: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Every execution of ``namespace`` matching ``filters`` (exact values), oldest first."""
        return await every(self.store, EXECUTIONS, namespace, filters, sort="created")

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
        created: tuple[float | None, float | None] = (None, None),
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the executions matching ``filters``, whose status is one of ``statuses``
        (any, when empty), whose tags include all of ``tags`` and that were created strictly
        between the bounds of ``created`` (seconds since the epoch; None: unbounded); newest
        first unless ``oldest``. Answers the page and the count of all that match."""
        if tags or created != (None, None):
            keep = _kept(tags, *created)
            return await self._scanned(namespace, filters, statuses, keep, limit, offset, oldest)
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

    async def _scanned(
        self,
        namespace: str,
        filters: dict[str, Any],
        statuses: list[str],
        keep: Callable[[dict[str, Any]], bool],
        limit: int,
        offset: int,
        oldest: bool,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of what the store cannot filter (tags, times): the executions matching the exact
        filters, read whole, those ``keep`` keeps."""
        found: list[dict[str, Any]] = []
        for status in statuses or [""]:
            found.extend(await self.find(namespace, filters | _status([status] if status else [])))
        if len(statuses) > 1:
            found.sort(key=_age)
        found = [r for r in found if keep(r)]
        if not oldest:
            found.reverse()
        return found[offset : offset + limit], len(found)

    # -- the feed events of its own commits -----------------------------------------------------

    def own(self, event: Event) -> bool:
        """Whether the engine is to pass over ``event`` (a stored change of an execution): it
        tells of a commit made and acted on here, or of an older version; or it came while this
        process writes the execution, and is held until the write ends."""
        if event.version is None or event.event == "DELETED":
            return False
        key = (event.namespace, event.objectid)
        if self._echo(key, event.version):
            return True
        if key in self._writing or key in self._held:  # newer than what was written here so far
            self._held.setdefault(key, []).append(event)
            return True
        return False

    @property
    def in_flight(self) -> int:
        """Executions whose latest commit made here has not come back from the feed yet, or whose
        feed events are held during a write."""
        return len(self._written.keys() | self._held.keys())

    def _echo(self, key: Key, version: int) -> bool:
        written = self._written.get(key)
        if written is None:
            return False
        if version >= written:  # the latest commit made here is back (or was overtaken)
            del self._written[key]
        return version <= written

    async def _written_here(self, namespace: str, objectid: str, write: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """Make ``write``, an execution's commit that the engine acts on itself; the feed events of
        the execution that come meanwhile are held, and judged once it has ended."""
        key = (namespace, objectid)
        self._writing[key] = self._writing.get(key, 0) + 1
        try:
            stored = await write
            self._written[key] = max(stored["version"], self._written.get(key, 0))
            return stored
        finally:
            left = self._writing.pop(key) - 1
            if left:
                self._writing[key] = left
            elif key in self._held:  # after what the writer does with its commit, in this turn
                asyncio.get_running_loop().call_soon(self._release, key)

    def _release(self, key: Key) -> None:
        """Judge the events held during a write that has ended: those of a version written here
        (or older) are passed over, the others acted on, unless another write began meanwhile:
        they then wait for it, as they may be its own."""
        newer = [event for event in self._held.pop(key, ()) if not self._echo(key, event.version or 0)]
        if key in self._writing:
            if newer:
                self._held[key] = newer
            return
        for event in newer:
            self._act(event)

    # -- revisions ---------------------------------------------------------------------------

    async def save_revision(self, snapshot: dict[str, Any]) -> None:
        """Store the definition a flow has now, under its revision id (once: it never changes)."""
        with contextlib.suppress(Conflict):  # another process stored the same snapshot
            await self.store.insert(REVISIONS, "", snapshot, no_text)

    async def revision(self, revision: str) -> dict[str, Any] | None:
        return await self.store.get(REVISIONS, "", revision)

    # -- namespaces --------------------------------------------------------------------------

    async def namespaces(self) -> list[str]:
        """The namespaces that hold executions: where recovery looks."""
        self._namespaces.update(await self.store.namespaces(EXECUTIONS))
        return sorted(self._namespaces)

    @property
    def known_namespaces(self) -> list[str]:
        """The namespaces known to hold executions: found at start, or written here since."""
        return sorted(self._namespaces)

    def noted(self, namespace: str) -> None:
        """``namespace`` holds an execution started here (where the queue looks)."""
        self._namespaces.add(namespace)


def _ignore(event: Event) -> None:
    pass


def _status(statuses: list[str]) -> dict[str, Any]:
    return {"status": statuses[0]} if statuses else {}


def _kept(tags: list[str], after: float | None, before: float | None) -> Callable[[dict[str, Any]], bool]:
    """Whether an execution has all of ``tags`` and was created strictly between ``after`` and ``before``."""
    wanted = set(tags)

    def keep(record: dict[str, Any]) -> bool:
        if not wanted <= set(record.get("tags") or []):
            return False
        if after is None and before is None:
            return True
        created = datetime.fromisoformat(str(record.get("created"))).timestamp()
        return (after is None or created > after) and (before is None or created < before)

    return keep


def _age(record: dict[str, Any]) -> tuple[Any, Any]:
    return (record.get("created"), record.get("id"))
