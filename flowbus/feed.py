"""The change feed: the store's change log, published on the backplane in commit order.

Every write to the store (by this process or another one sharing it) records a change; the feed
reads them after the last one it published and publishes each as an :class:`~flowbus.backplane.Event`
on the object's subject, with its ``seq`` and ``version``. Caches and the auth engine subscribe
instead of polling the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flowbus.backplane import Backplane, Event
from flowbus.errors import Gone
from flowbus.store.base import Change, Store

__all__ = ["ChangeFeed", "Retention", "applier", "change_of", "event_of"]

logger = logging.getLogger("flowbus.feed")


def event_of(change: Change) -> Event:
    """The event that tells subscribers of ``change`` (its collection is the endpoint). The change's
    JSON text, if it was not decoded yet, travels undecoded: a handler decodes it when it needs it."""
    body = change.body
    return Event(
        change.kind,
        change.collection,
        change.objectid,
        change.namespace,
        None if body is not None else change.data,
        seq=change.seq,
        version=change.version,
        body=body,
    )


def change_of(event: Event) -> Change | None:
    """The change an event of the feed tells of (for a subscriber that applies changes, like a
    cache), or None for an event that is not a stored change (no ``seq``)."""
    if event.seq is None or event.version is None:
        return None
    body = event.body
    if body is None and not isinstance(event.data, dict):
        return None
    # The commit time does not travel with the event; appliers of changes do not need it.
    data = None if body is not None else event.data
    return Change(
        event.seq, event.event, event.endpoint, event.namespace, event.objectid, event.version, data, "", body=body
    )


def applier(apply: Callable[[Change], None]) -> Callable[[str, Event], None]:
    """A backplane handler that hands each stored change it receives to ``apply``."""

    def handle(subject: str, event: Event) -> None:
        change = change_of(event)
        if change is not None:
            apply(change)

    return handle


class ChangeFeed:
    """Publishes the store's changes on the backplane, in ``seq`` order, from the moment it starts.

    Args:
        store: the store whose change log is read.
        backplane: where the changes are published.
        wait: the longest wait for the store to tell of a change before the feed looks at the
            log anyway: a bound, not a poll, since the store wakes the feed for every commit
            (this process's at once, other processes' by LISTEN or the SQLite store's one look).
        batch: changes read at once.
        backoff: the first and the longest pause after a store error, in seconds.
    """

    name = "feed"

    def __init__(
        self,
        store: Store,
        backplane: Backplane,
        *,
        wait: float = 60.0,
        batch: int = 1000,
        backoff: tuple[float, float] = (0.05, 5.0),
    ) -> None:
        self.store = store
        self.backplane = backplane
        self.wait = wait
        self.batch = batch
        self.backoff = backoff
        self.last = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start after the latest change committed so far, then follow the log."""
        self.last = await self.store.last_seq()
        self._task = asyncio.create_task(self._follow(), name="change feed")

    async def stop(self) -> None:
        """Stop following (what was committed but not yet published is left to the log)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def catch_up(self) -> int:
        """Publish every change committed after :attr:`last`; returns how many were published."""
        published = 0
        while True:
            changes = await self.store.changes(self.last, self.batch)
            for change in changes:
                event = event_of(change)
                self.backplane.publish(event.subject, event)
                self.last = change.seq
            published += len(changes)
            if len(changes) < self.batch:
                return published

    async def _follow(self) -> None:
        pause = self.backoff[0]
        while True:
            try:
                await self.store.wait_changed(self.last, self.wait)
                await self.catch_up()
                pause = self.backoff[0]
            except asyncio.CancelledError:
                raise
            except Gone:
                await self._skip_trimmed()
            except Exception:
                # nothing tells when the store answers again: a pause that doubles, not a poll
                logger.error("could not read the change log; retrying in %.2fs", pause, exc_info=True)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.backoff[1])

    async def _skip_trimmed(self) -> None:
        """The log no longer holds what comes after :attr:`last` (the process was paused longer than
        the log's retention): go on from what it holds now, and say so."""
        try:
            skipped_to = await self.store.first_seq()
        except Exception:
            logger.error("could not read where the change log starts", exc_info=True)
            await asyncio.sleep(self.backoff[1])
            return
        logger.error("change log trimmed past seq %d; going on from %d", self.last, skipped_to)
        self.last = skipped_to


class Retention:
    """Keeps the change log to ``keep`` seconds: every ``every`` seconds, the changes committed
    longer ago than that are trimmed. A reader that comes back later than that gets ``GONE``
    and knows to reload, instead of silently missing changes.
    """

    name = "retention"

    def __init__(self, store: Store, keep: float, *, every: float = 3600.0) -> None:
        self.store = store
        self.keep = keep
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="change log retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def trim(self) -> int:
        """Trim once now; returns how many changes went."""
        before = datetime.fromtimestamp(time.time() - self.keep, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return await self.store.trim_changes(before)

    async def _run(self) -> None:
        while True:
            try:
                trimmed = await self.trim()
                if trimmed:
                    logger.info("trimmed %d changes older than %.0f s from the change log", trimmed, self.keep)
            except Exception:
                logger.error("could not trim the change log", exc_info=True)
            await asyncio.sleep(self.every)
