"""The eager task factory and the pure handshake rules."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from flowbus.config import Settings
from flowbus.handshake import Connections, Handshake, connection_defaults
from flowbus.tasks import use_eager_tasks


async def test_tasks_are_eager_where_python_has_them() -> None:
    """On 3.12+ a task started on the bus's loop runs up to its first await at once; on 3.11 it waits its turn."""
    loop = asyncio.get_running_loop()
    ran: list[str] = []

    async def call() -> None:
        ran.append("started")

    use_eager_tasks(loop)
    try:
        task = loop.create_task(call())
        assert ran == (["started"] if sys.version_info >= (3, 12) else [])
        await task
        assert ran == ["started"]
    finally:
        loop.set_task_factory(None)


def test_connections_cap_takes_and_gives_back_places() -> None:
    """The cap refuses a place past its limit and takes one again once one is released."""
    connections = Connections(2)
    assert connections.take() and connections.take()
    assert not connections.take()
    connections.release()
    assert connections.take()
    assert connections.count == 2


def test_handshake_rules() -> None:
    """Shutting down answers 503, a foreign Origin 403, an unknown Host without auth 403."""
    rules = Handshake(Settings.load({"data": Path("unused"), "no_auth": True}, env={}))
    closing = rules.refusal(True, None, None)
    assert closing is not None and closing.status == 503
    origin = rules.refusal(False, "http://evil.example", "127.0.0.1:8765")
    assert origin is not None and origin.status == 403
    host = rules.refusal(False, None, "evil.example")
    assert host is not None and host.status == 403
    assert rules.refusal(False, "http://127.0.0.1:8765", "127.0.0.1:8765") is None


def test_connection_defaults_read_endpoint_and_token() -> None:
    """The path names the default endpoint; ?token= or a bearer header the default token."""
    assert connection_defaults("/inventory/device?token=abc", {}) == ("inventory/device", "abc")
    assert connection_defaults("/", {"Authorization": "Bearer xyz"}) == (None, "xyz")
