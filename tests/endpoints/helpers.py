"""Helpers of the auth tests: calls with a given token over websockets and HTTP, users, tokens."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection

from tests.support import Served, rpc

DEVICE = "inventory/device"
DEVICES = "/api/inventory/inventory/device/"
TOKENS = "/api/auth/auth/token/"
PASSWORD = "a-password-of-the-tests"


def unique(prefix: str = "t") -> str:
    """A name no other test uses (users, namespaces, ids on a shared bus)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def call(ws: ClientConnection, method: str, endpoint: str | None = DEVICE, **fields: Any) -> dict[str, Any]:
    """Make one call over an open websocket; fields left None are not sent."""
    message = {"method": method, "endpoint": endpoint, **fields}
    return await rpc(ws, {k: v for k, v in message.items() if v is not None})


async def ws_call(bus: Served, token: str | None, method: str, endpoint: str = DEVICE, **fields: Any) -> dict[str, Any]:
    """Open a websocket without a connection token and make one call with ``token`` in the envelope."""
    async with bus.connect(token=None) as ws:
        return await call(ws, method, endpoint, token=token, **fields)


def ok(answer: dict[str, Any]) -> Any:
    """The data of a successful answer (asserting it succeeded)."""
    assert answer["success"] is True, answer
    return answer["data"]


def refused(answer: dict[str, Any], errorcode: str) -> dict[str, Any]:
    """Assert the answer failed with ``errorcode``; return it."""
    assert answer["success"] is False, answer
    assert answer["errorcode"] == errorcode, answer
    return answer


async def http(
    bus: Served,
    verb: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Make one HTTP call; return its status, headers and JSON envelope."""
    async with (
        aiohttp.ClientSession(base_url=bus.http_url) as session,
        session.request(verb, path, json=body, headers=headers or {}) as response,
    ):
        return response.status, dict(response.headers), orjson.loads(await response.read())


def basic(username: str, password: str) -> dict[str, str]:
    """HTTP Basic headers."""
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(bus: Served, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """Log in over websockets (the envelope of CREATE auth/token, no token needed)."""
    data = {"username": username, "password": password}
    return await ws_call(bus, None, "CREATE", "auth/token", data=data)


async def add_user(
    bus: Served,
    roles: list[str],
    namespaces: list[str] | None = None,
    *,
    name: str | None = None,
    password: str = PASSWORD,
) -> tuple[str, str]:
    """Create a user (as admin) and log in as it; return its name and a token."""
    name = name or unique("user")
    data = {"username": name, "password": password, "roles": roles, "namespaces": namespaces}
    ok(await ws_call(bus, bus.token, "CREATE", "auth/user", data=data))
    return name, ok(await login(bus, name, password))["token"]


async def admin(bus: Served, method: str, endpoint: str = DEVICE, **fields: Any) -> Any:
    """Make one call as the admin; return its data (asserting success)."""
    return ok(await ws_call(bus, bus.token, method, endpoint, **fields))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The header, payload and (still encoded) signature of a JWT."""
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), signature


def jwt_join(header: dict[str, Any], payload: dict[str, Any], signature: str) -> str:
    """A JWT of the given parts (the signature is not recomputed)."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}.{signature}"
