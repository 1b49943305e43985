"""Objects that fire on a cron schedule: scheduled flows, scheduler jobs.

:class:`CronObjects` keeps a timer for every object of one collection whose schedule says it
should fire, in every namespace that holds one (``Store.namespaces``): armed at start from the
store, re-armed when an object is written here (:meth:`~CronObjects.armed`) or in another
process (the change feed). When a timer fires, the process claims the firing in ``claims``, in a record named
after the object that holds the latest firing claimed: of several processes sharing a store, the
one whose conditional write moves it forward fires it. A firing missed while no process ran is
not made up for: the next one is armed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from endpoints.flows.clock import Clock, Timer
from endpoints.flows.model import no_text
from endpoints.flows.schedule import Schedule
from flowbus import Conflict, DoesNotExist, Event, Services, every, every_object, iso

__all__ = ["CronObjects"]

logger = logging.getLogger("flowbus.flows")

Key = tuple[str, str]


class CronObjects:
    """Timers for the objects of ``collection`` that carry a schedule (a subclass says which
    should fire, with :meth:`schedule_of`, and what firing does, with :meth:`fire`)."""

    name = "cron"

    def __init__(self, collection: str, claims: str, clock: Clock) -> None:
        self.collection = collection
        self.claims = claims
        self.clock = clock
        self._timers: dict[Key, tuple[float, Timer]] = {}
        self._unsubscribe: Any = None
        self._services: Services | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def services(self) -> Services:
        assert self._services is not None, "not started"
        return self._services

    def schedule_of(self, obj: dict[str, Any]) -> Schedule | None:
        """The schedule ``obj`` fires on now, or None (none given, disabled, stopped...)."""
        raise NotImplementedError

    async def fire(self, namespace: str, obj: dict[str, Any], when: float) -> None:
        """Do what ``obj`` does when it fires (claimed by this process)."""
        raise NotImplementedError

    async def start(self, services: Services) -> None:
        self._services = services
        self._unsubscribe = services.backplane.subscribe(every_object(self.collection), self._changed)
        for namespace in await services.store.namespaces(self.collection):
            for obj in await every(services.store, self.collection, namespace):
                self.armed(namespace, obj)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def armed(self, namespace: str, obj: dict[str, Any]) -> None:
        """Arm (or re-arm, or disarm) the timer of an object just written."""
        key = (namespace, obj["id"])
        schedule = self._schedule(obj)
        try:
            when = schedule.next_after(datetime.fromtimestamp(self.clock.now(), UTC)).timestamp() if schedule else None
        except ValueError as exc:  # it never fires: stored before schedules were checked for that
            logger.warning("%s %r in %r is not armed: %s", self.collection, obj["id"], namespace, exc)
            when = None
        if when is None:
            self.disarmed(*key)
            return
        planned = self._timers.get(key)
        if planned is not None and planned[0] == when:
            return
        self.disarmed(*key)
        self._timers[key] = (when, self.clock.at(when, lambda: self._due(key, when)))

    def disarmed(self, namespace: str, objectid: str) -> None:
        """Forget the timer of an object (deleted, or no longer firing)."""
        planned = self._timers.pop((namespace, objectid), None)
        if planned is not None:
            planned[1].cancel()

    def _schedule(self, obj: dict[str, Any]) -> Schedule | None:
        try:
            return self.schedule_of(obj)
        except ValueError:  # a schedule stored before it was checked as it is now
            return None

    def _changed(self, subject: str, event: Event) -> None:
        if not isinstance(event.data, dict) or event.seq is None:
            return
        if event.event == "DELETED":
            self.disarmed(event.namespace, event.objectid)
            self._forget_claim(event.namespace, event.objectid)
        else:
            self.armed(event.namespace, event.data)

    def _forget_claim(self, namespace: str, objectid: str) -> None:
        task = asyncio.get_running_loop().create_task(self._drop_claim(namespace, objectid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop_claim(self, namespace: str, objectid: str) -> None:
        store = self.services.store
        if await store.get(self.claims, namespace, objectid) is not None:
            with contextlib.suppress(DoesNotExist):  # every process hears of the deletion
                await store.delete(self.claims, namespace, objectid)

    def _due(self, key: Key, when: float) -> None:
        self._timers.pop(key, None)
        asyncio.get_running_loop().create_task(self._fire(key, when))

    async def _fire(self, key: Key, when: float) -> None:
        namespace, objectid = key
        store = self.services.store
        obj = await store.get(self.collection, namespace, objectid)
        if obj is None:
            return
        self.armed(namespace, obj)  # the next firing
        if self._schedule(obj) is None:
            return
        if await self._claimed(namespace, objectid, when):
            await self.fire(namespace, obj, when)

    async def _claimed(self, namespace: str, objectid: str, when: float) -> bool:
        """Claim the firing at ``when``: True in the one process whose write lands first.

        The claim is one record per object (its id), holding the latest firing claimed: a
        conditional write moves it forward, so it never grows with the firings."""
        store = self.services.store
        record = {"at": iso(when), "time": when}
        for _ in range(3):
            claim = await store.get(self.claims, namespace, objectid)
            if claim is not None and float(claim.get("time", 0)) >= when:
                return False  # another process fired it
            try:
                if claim is None:
                    await store.insert(self.claims, namespace, {"id": objectid, **record}, no_text)
                else:
                    await store.patch(self.claims, namespace, objectid, record, no_text, expect=claim["version"])
            except Conflict:
                if claim is None:
                    return False  # another process's first claim landed
                continue  # read it again: the version moved (or this process's copy was old)
            return True
        return False
