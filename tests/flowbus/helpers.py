"""Small helpers shared by the tests of the bus core."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from flowbus.store import SQLiteStore
from tests.support import rpc

DEVICE = "inventory/device"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def unique(prefix: str = "t") -> str:
    """A name no other test uses (for namespaces, ids and gates on a shared bus)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def call(ws: ClientConnection, method: str, endpoint: str | None = DEVICE, **fields: Any) -> dict[str, Any]:
    """Make one call; fields left None are not sent."""
    message = {"method": method, "endpoint": endpoint, **fields}
    return await rpc(ws, {k: v for k, v in message.items() if v is not None})


async def ok(ws: ClientConnection, method: str, endpoint: str | None = DEVICE, **fields: Any) -> Any:
    """Make one call that must succeed; return its data."""
    answer = await call(ws, method, endpoint, **fields)
    assert answer["success"] is True, answer
    assert answer["status"] == 0
    return answer["data"]


async def fails(
    ws: ClientConnection, errorcode: str, method: str, endpoint: str | None = DEVICE, **fields: Any
) -> dict[str, Any]:
    """Make one call that must fail with ``errorcode``; return the error envelope."""
    answer = await call(ws, method, endpoint, **fields)
    assert answer["success"] is False, answer
    assert answer["errorcode"] == errorcode, answer
    assert str(uuid.UUID(answer["errorid"])) == answer["errorid"]
    return answer


def count_batches(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches ``store``'s writer commits from now on, in order (filled as it goes)."""
    sizes: list[int] = []
    apply = store._apply

    def counting(ops: list[Any]) -> list[Any]:
        sizes.append(len(ops))
        return apply(ops)

    monkeypatch.setattr(store, "_apply", counting)
    return sizes
