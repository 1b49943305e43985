"""A custom authenticator whose ``known()`` fast path knows no one: every call is authenticated by
it, OPENs of cached objects included (the fast path must not let anyone in unasked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from endpoints.inventory import create_app as create_inventory
from flowbus.answers import encode
from flowbus.auth.base import ANONYMOUS, AllowAll, Credentials, Identity, OpenAuthenticator
from flowbus.bus import Bus
from flowbus.config import Settings
from flowbus.errors import AuthFailed
from flowbus.node import build_bus
from flowbus.protocol import parse_request


class OnlyAlice:
    """Lets in the token ``alice``, refuses any other; remembers nobody (``known()`` is always None)."""

    def __init__(self) -> None:
        self.asked = 0
        self.known_asked = 0

    def known(self, credentials: Credentials) -> Identity | None:
        self.known_asked += 1
        return None

    async def authenticate(self, credentials: Credentials) -> Identity:
        self.asked += 1
        if credentials.token != "alice":
            raise AuthFailed("not alice")
        return Identity("alice")


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[tuple[Bus, OnlyAlice]]:
    auth = OnlyAlice()
    served, _ = build_bus(
        Settings(data=tmp_path, ws_port=0, http_port=0),
        [create_inventory()],
        authenticator=auth,
        authorizer=AllowAll(),
        transports=(),
    )
    await served.start()
    try:
        yield served, auth
    finally:
        await served.stop()


async def call(bus: Bus, token: str, **envelope: object) -> dict[str, object]:
    raw = orjson.dumps({"endpoint": "inventory/device", "token": token, **envelope}).decode()
    request = parse_request(raw)
    answer: dict[str, object] = orjson.loads(encode(await bus.dispatcher.handle(request, Credentials(token=token))))
    return answer


async def test_an_authenticator_that_knows_nobody_is_asked_on_every_call(bus: tuple[Bus, OnlyAlice]) -> None:
    served, auth = bus
    created = await call(served, "alice", method="CREATE", data={"name": "sw"})
    assert created["success"] is True
    objectid = created["data"]["id"]  # type: ignore[index]
    asked, known_asked = auth.asked, auth.known_asked
    for _ in range(3):  # the object is cached: the OPEN fast path would answer without asking
        assert (await call(served, "alice", method="OPEN", objectid=objectid))["success"] is True
    assert auth.asked == asked + 3
    assert auth.known_asked >= known_asked + 3  # the dispatcher asks known() first, every time
    refused = await call(served, "mallory", method="OPEN", objectid=objectid)
    assert refused["errorcode"] == "AUTH_FAILED"


async def test_every_authenticator_of_the_bus_answers_known() -> None:
    """``known()`` is part of the seam: the open authenticator knows everyone at once, as anonymous,
    whatever the credentials; credentials are built with keywords."""
    open_auth = OpenAuthenticator()
    for credentials in (Credentials(), Credentials(token="t", peer="10.0.0.1"), Credentials(apikey="k", peer="p")):
        assert open_auth.known(credentials) is ANONYMOUS
        assert await open_auth.authenticate(credentials) is ANONYMOUS
    given = Credentials(token="t", username="u", password="pw", apikey="k", peer="10.0.0.1")
    assert (given.token, given.username, given.password, given.apikey, given.peer) == ("t", "u", "pw", "k", "10.0.0.1")
    assert "pw" not in repr(given)
