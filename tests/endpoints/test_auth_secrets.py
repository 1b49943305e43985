"""The JWT signing secret: given by FLOWBUS_JWT_SECRET, or kept in the data directory; rotating it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tests.endpoints.helpers import admin, ok, refused, unique, ws_call
from tests.support import Served, serve, serving

SECRET = "a-secret-given-by-the-environment-for-tests"


@pytest.fixture(scope="module")
def env_secret_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus signing with FLOWBUS_JWT_SECRET."""
    with serving(tmp_path_factory.mktemp("env-secret"), env={"FLOWBUS_JWT_SECRET": SECRET}) as served:
        yield served


def signed(secret: str | bytes, subject: str = "admin") -> str:
    now = int(time.time())
    claims = {"sub": subject, "jti": unique("jti"), "iat": now, "exp": now + 600, "roles": ["admin"], "ns": None}
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_token_of_a_bus_with_another_secret_is_refused(bus: Served, env_secret_bus: Served) -> None:
    """A token signed by another bus (another secret) is refused with AUTH_FAILED, both ways."""
    assert bus.token is not None and env_secret_bus.token is not None
    refused(await ws_call(env_secret_bus, bus.token, "LIST"), "AUTH_FAILED")
    refused(await ws_call(bus, env_secret_bus.token, "LIST"), "AUTH_FAILED")


async def test_tokens_are_signed_with_the_secret_from_the_environment(env_secret_bus: Served) -> None:
    """With FLOWBUS_JWT_SECRET the bus signs and verifies with it, and keeps no jwt.secret file."""
    assert env_secret_bus.token is not None
    assert jwt.decode(env_secret_bus.token, SECRET, algorithms=["HS256"])["sub"] == "admin"
    ok(await ws_call(env_secret_bus, signed(SECRET), "LIST"))
    assert not (env_secret_bus.data / "jwt.secret").exists()


async def test_rotating_the_secret_refuses_old_tokens_but_keeps_api_keys(tmp_path: Path) -> None:
    """jwt.secret survives restarts; deleting it refuses old tokens on the next start, API keys keep working."""
    first = serve(tmp_path)
    try:
        assert first.token is not None
        token = first.token
        key = (await admin(first, "CREATE", "auth/apikey", data={}))["key"]
    finally:
        first.stop()
    secret = (first.data / "jwt.secret").read_bytes()

    second = serve(tmp_path)
    try:
        ok(await ws_call(second, token, "LIST"))
    finally:
        second.stop()
    assert (second.data / "jwt.secret").read_bytes() == secret

    (second.data / "jwt.secret").unlink()
    third = serve(tmp_path)
    try:
        assert (third.data / "jwt.secret").read_bytes() != secret
        refused(await ws_call(third, token, "LIST"), "AUTH_FAILED")
        ok(await ws_call(third, key, "LIST"))
        assert third.token is not None
        ok(await ws_call(third, third.token, "LIST"))
    finally:
        third.stop()
