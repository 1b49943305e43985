"""The change feed publishes the store's changes on the backplane, in order, whoever wrote them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowbus.backplane import Event, LocalBackplane
from flowbus.feed import ChangeFeed
from flowbus.store import SQLiteStore

pytestmark = pytest.mark.skipif(not hasattr(SQLiteStore, "wait_changed"), reason="the store keeps no change log yet")

DEVICE = "inventory/device"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "flowbus.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def until(events: list[Event], count: int) -> None:
    """Wait (at most a few seconds) until ``count`` events arrived."""
    deadline = time.monotonic() + 5
    while len(events) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


async def test_changes_are_published_in_order_on_their_subjects(store: SQLiteStore) -> None:
    """CREATED, UPDATED and DELETED arrive once each, in seq order, with version and subject."""
    backplane = LocalBackplane()
    got: list[tuple[str, Event]] = []
    events: list[Event] = []

    def heard(subj: str, event: Event) -> None:
        got.append((subj, event))
        events.append(event)

    backplane.subscribe("*.inventory/device.*", heard)
    feed = ChangeFeed(store, backplane, wait=0.5)
    await feed.start()
    try:
        await store.insert(DEVICE, "n.1", {"id": "d.1", "name": "a"}, lambda obj: "")
        await store.patch(DEVICE, "n.1", "d.1", {"name": "b"}, lambda obj: "")
        await store.delete(DEVICE, "n.1", "d.1")
        await until(events, 3)
    finally:
        await feed.stop()
    assert [e.event for e in events] == ["CREATED", "UPDATED", "DELETED"]
    assert [e.version for e in events] == [1, 2, 2]
    seqs = [e.seq for e in events if e.seq is not None]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert {subj for subj, _ in got} == {"n%2E1.inventory/device.d%2E1"}


async def test_writes_of_another_store_on_the_same_file_are_published(store: SQLiteStore, tmp_path: Path) -> None:
    """A second store on the same database (another process) is seen through the change log."""
    backplane = LocalBackplane()
    events: list[Event] = []
    backplane.subscribe(">", lambda subj, event: events.append(event))
    feed = ChangeFeed(store, backplane, wait=0.5)
    await feed.start()
    other = SQLiteStore(tmp_path / "flowbus.db")
    await other.open()
    try:
        await other.insert(DEVICE, "", {"id": "x", "name": "from elsewhere"}, lambda obj: "")
        await until(events, 1)
    finally:
        await other.close()
        await feed.stop()
    assert [(e.event, e.objectid, e.data["name"]) for e in events] == [("CREATED", "x", "from elsewhere")]


async def test_changes_before_the_start_are_not_published(store: SQLiteStore) -> None:
    """The feed starts after the latest change committed when it starts."""
    await store.insert(DEVICE, "", {"id": "old"}, lambda obj: "")
    backplane = LocalBackplane()
    events: list[Event] = []
    backplane.subscribe(">", lambda subj, event: events.append(event))
    feed = ChangeFeed(store, backplane, wait=0.5)
    await feed.start()
    try:
        await store.insert(DEVICE, "", {"id": "new"}, lambda obj: "")
        await until(events, 1)
    finally:
        await feed.stop()
    assert [e.objectid for e in events] == ["new"]
