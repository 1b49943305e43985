"""Fixtures: a real bus process per test module (``bus``) or per test (``fresh_bus``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support import Served, serving


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus shared by the tests of one module; tests keep apart by ids and namespaces."""
    with serving(tmp_path_factory.mktemp("bus")) as served:
        yield served


@pytest.fixture
def fresh_bus(tmp_path: Path) -> Iterator[Served]:
    """A bus of this test's own, with an empty data directory."""
    with serving(tmp_path) as served:
        yield served


@pytest.fixture
async def ws(bus: Served) -> AsyncIterator[ClientConnection]:
    """A websocket connection to the module's bus."""
    async with bus.connect() as connection:
        yield connection
