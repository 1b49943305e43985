"""Gateway fixtures: a bus that also serves the echo application, and HTTP sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support import Served, serving


@pytest.fixture(scope="module")
def echo_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus with the built-in applications and ``tests.gateway.echo``, shared by a module.

    It runs without authentication: the echo endpoints answer the credentials they were given,
    made-up ones included, so the tests can see what the gateway made of each request.
    """
    with serving(
        tmp_path_factory.mktemp("echo-bus"), "--app", "tests.gateway.echo:create_app", "--insecure-no-auth"
    ) as served:
        yield served


@pytest.fixture
async def http(bus: Served) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session on the module's bus (paths relative to its root), logged in as admin."""
    headers = {"Flow-Auth-Token": bus.token or ""}
    async with aiohttp.ClientSession(base_url=bus.http_url, headers=headers) as session:
        yield session


@pytest.fixture
async def echo_http(echo_bus: Served) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session on the echo bus."""
    async with aiohttp.ClientSession(base_url=echo_bus.http_url) as session:
        yield session
