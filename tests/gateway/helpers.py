"""Helpers of the gateway tests."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

DEVICES = "/api/inventory/inventory/device/"
ECHO = "/api/echo/echo/call/"


async def fetch(session: aiohttp.ClientSession, verb: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Make one HTTP call; return its status and its JSON envelope."""
    async with session.request(verb, path, **kwargs) as response:
        envelope: dict[str, Any] = orjson.loads(await response.read())
        return response.status, envelope


async def echoed(session: aiohttp.ClientSession, verb: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Call the echo application; return the call its endpoint saw (asserting success)."""
    status, envelope = await fetch(session, verb, path, **kwargs)
    assert envelope["success"] is True, envelope
    assert status in (200, 201)
    data = envelope["data"]
    seen: dict[str, Any] = data[0] if isinstance(data, list) else data
    return seen
