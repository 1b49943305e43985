"""Fixtures: a real bus process per test module (``bus``) or per test (``fresh_bus``).

Their websocket connections go to the bus's websocket port. A module whose tests must hold for
both websocket entries overrides the ``entry`` fixture with one parametrized over ``ENTRIES``:
its tests then run once against the websocket port and once against the gateway's ``/ws``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support import PORT, Served, serving


@pytest.fixture(scope="module")
def entry() -> str:
    """The websocket entry the module's tests connect to."""
    return PORT


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory, entry: str) -> Iterator[Served]:
    """A bus shared by the tests of one module; tests keep apart by ids and namespaces."""
    with serving(tmp_path_factory.mktemp("bus"), entry=entry) as served:
        yield served


@pytest.fixture
def fresh_bus(tmp_path: Path, entry: str) -> Iterator[Served]:
    """A bus of this test's own, with an empty data directory."""
    with serving(tmp_path, entry=entry) as served:
        yield served


@pytest.fixture
async def ws(bus: Served) -> AsyncIterator[ClientConnection]:
    """A websocket connection to the module's bus."""
    async with bus.connect() as connection:
        yield connection
