"""What the scenarios send: logging in, the objects to OPEN, the envelopes, and checking a URL answers."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

ENDPOINT = "inventory/device"
API_PATH = "/api/inventory/inventory/device/"
PROBE_TIMEOUT = 10.0


def device(i: int, prefix: str = "bench-sw") -> dict[str, Any]:
    """The fields of bench device ``i``: about 100 bytes of JSON, before id and timestamps."""
    return {
        "name": f"{prefix}-{i:04d}",
        "description": "48-port access switch",
        "location": f"rack {i % 12 + 1}",
        "address": f"10.0.{i // 250}.{i % 250 + 1}",
    }


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_token(url: str, token: str | None) -> str:
    """``url`` with the token in its query, as the handshake carries it (the bus's default token)."""
    if token is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"


def gateway_ws_url(http_url: str) -> str:
    """The websocket entry on the gateway's port: ``http://host:port`` -> ``ws://host:port/ws``."""
    parts = urlsplit(http_url)
    return f"ws://{parts.netloc}/ws"


# -- envelopes --------------------------------------------------------------------------------


def prefix(envelope: dict[str, Any]) -> str:
    """An envelope's JSON without its closing brace, ready for ``requestid`` + ``}``."""
    return orjson.dumps(envelope).decode()[:-1] + ',"requestid":'


def open_prefixes(ids: Sequence[str]) -> list[str]:
    return [prefix({"method": "OPEN", "endpoint": ENDPOINT, "objectid": oid}) for oid in ids]


def create_prefixes(count: int) -> list[str]:
    return [prefix({"method": "CREATE", "endpoint": ENDPOINT, "data": device(i, "bench-new")}) for i in range(count)]


def write_prefixes(path: Path, prefixes: list[str]) -> Path:
    path.write_bytes(orjson.dumps(prefixes))
    return path


# -- talking to the bus -----------------------------------------------------------------------


async def call(ws: ClientConnection, envelope: dict[str, Any]) -> dict[str, Any]:
    await ws.send(orjson.dumps(envelope), text=True)
    answer: dict[str, Any] = orjson.loads(await ws.recv(decode=False))
    return answer


async def log_in(url: str, user: str, password: str) -> str:
    """Log in through ``auth/token`` CREATE and return the token."""
    login = {"method": "CREATE", "endpoint": "auth/token", "data": {"username": user, "password": password}}
    async with connect(url, compression=None) as ws:
        answer = await call(ws, login)
    if answer.get("success") is not True:
        raise RuntimeError(f"login failed: {answer.get('errorcode')}: {answer.get('message')}")
    token: str = answer["data"]["token"]
    return token


async def create_objects(url: str, count: int) -> list[dict[str, Any]]:
    """CREATE ``count`` devices (all in flight at once) and return them as stored."""
    async with connect(url, compression=None, max_size=None) as ws:
        for i in range(count):
            envelope = {"method": "CREATE", "endpoint": ENDPOINT, "data": device(i), "requestid": i}
            await ws.send(orjson.dumps(envelope), text=True)
        stored: list[dict[str, Any]] = [{}] * count
        for _ in range(count):
            answer = orjson.loads(await ws.recv(decode=False))
            if answer.get("success") is not True:
                raise RuntimeError(f"CREATE failed: {answer.get('errorcode')}: {answer.get('message')}")
            stored[answer["requestid"]] = answer["data"]
    return stored


async def probe(url: str, objectid: str) -> str | None:
    """None when ``url`` takes a websocket and answers an OPEN of ``objectid``; else why not."""
    envelope = {"method": "OPEN", "endpoint": ENDPOINT, "objectid": objectid, "requestid": "probe"}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT), connect(url, compression=None, open_timeout=None) as ws:
            answer = await call(ws, envelope)
    except InvalidStatus as exc:
        return f"not available: the websocket handshake was refused (HTTP {exc.response.status_code})"
    except Exception as exc:  # refused, reset, timed out, not JSON: report it, don't end the run
        return f"not available: {type(exc).__name__}: {exc}"
    if answer.get("success") is not True:
        return f"not available: OPEN answered {answer.get('errorcode')}: {answer.get('message')}"
    return None


# -- PostgreSQL (S4pg) ------------------------------------------------------------------------


def postgres_answers(dsn: str) -> bool:
    """Whether a PostgreSQL server accepts a connection at ``dsn``."""

    async def connect_once() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close()

    try:
        asyncio.run(connect_once())
    except Exception:
        return False
    return True


def without_password(dsn: str) -> str:
    """``dsn`` as it may be printed: its password left out."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def drop_schemas(dsn: str, schemas: Sequence[str]) -> None:
    """Drop the schemas a run made (they are named by the run, never by its user)."""

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())
