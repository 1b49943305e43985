"""OPEN's fast path (an object served from the store's cache without a Call) answers exactly what
the endpoint's open() would, to exactly the callers open() would answer, on every entry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.endpoints.helpers import add_user, admin, http, ok, refused, unique, ws_call
from tests.flowbus.helpers import DEVICE
from tests.support import ENTRIES, Served, serve

MASKED = "testing/masked"


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory, entry: str) -> Iterator[Served]:
    served = serve(tmp_path_factory.mktemp("fastpath"), "--app", "tests.apps:create_app", entry=entry)
    try:
        yield served
    finally:
        served.stop()


async def open_everywhere(bus: Served, token: str | None, endpoint: str, objectid: str, **fields: Any) -> list[Any]:
    """OPEN over the bus's websocket entry and over HTTP (JSON), as ``token``; the two answers."""
    answer = await ws_call(bus, token, "OPEN", endpoint, objectid=objectid, **fields)
    headers = {"Flow-Auth-Token": token} if token else {}
    if "namespace" in fields:
        headers["Flow-Request-Namespace"] = fields["namespace"]
    app = endpoint.partition("/")[0]
    _, _, over_http = await http(bus, "GET", f"/api/{app}/{endpoint}/{objectid}", headers=headers)
    return [answer, over_http]


async def test_an_endpoint_that_overrides_open_is_never_bypassed(bus: Served) -> None:
    """A collection whose open() hides a field answers through open() even for a cached object."""
    created = await admin(bus, "CREATE", MASKED, data={"name": "m", "secret": "s3cret"})
    assert created["secret"] == "s3cret"  # CREATE answers the stored object; it is in the cache now
    for _ in range(2):
        for answer in await open_everywhere(bus, bus.token, MASKED, created["id"]):
            opened = ok(answer)
            assert "secret" not in opened and opened["masked"] is True


async def test_a_cached_object_answers_what_it_stores(bus: Served) -> None:
    """A collection's OPEN answers the object exactly as CREATE answered it, on every entry."""
    created = await admin(bus, "CREATE", DEVICE, data={"name": "sw", "tags": ["a"], "ports": 48})
    for answer in await open_everywhere(bus, bus.token, DEVICE, created["id"]):
        assert ok(answer) == created


async def test_a_cached_object_is_refused_to_whoever_open_refuses(bus: Served) -> None:
    """No role, another namespace, a bad token: each is refused the same with the object cached."""
    namespace = unique("ns")
    created = await admin(bus, "CREATE", DEVICE, namespace=namespace, data={"name": "kept"})
    _, no_role = await add_user(bus, [])
    _, elsewhere = await add_user(bus, ["viewer"], [unique("other")])
    for token, errorcode in [(no_role, "PERMISSION_DENIED"), (elsewhere, "PERMISSION_DENIED")]:
        for answer in await open_everywhere(bus, token, DEVICE, created["id"], namespace=namespace):
            refused(answer, errorcode)
    assert bus.token is not None
    forged = bus.token[:-4] + ("AAAA" if not bus.token.endswith("AAAA") else "BBBB")
    for answer in await open_everywhere(bus, forged, DEVICE, created["id"], namespace=namespace):
        refused(answer, "AUTH_FAILED")
    for answer in await open_everywhere(bus, None, DEVICE, created["id"], namespace=namespace):
        refused(answer, "AUTH_REQUIRED")


async def test_a_plain_get_of_a_cached_object_is_refused_as_any_open(bus: Served) -> None:
    """The gateway reads a plain GET (no namespace, no query string) without to_call; refusals
    are the same as everywhere, and the object stays hidden."""
    created = await admin(bus, "CREATE", DEVICE, data={"name": "plain"})
    _, no_role = await add_user(bus, [])
    assert bus.token is not None
    forged = bus.token[:-4] + ("AAAA" if not bus.token.endswith("AAAA") else "BBBB")
    for token, errorcode in [(no_role, "PERMISSION_DENIED"), (forged, "AUTH_FAILED"), (None, "AUTH_REQUIRED")]:
        for answer in await open_everywhere(bus, token, DEVICE, created["id"]):
            refused(answer, errorcode)
    for answer in await open_everywhere(bus, bus.token, DEVICE, created["id"]):
        assert ok(answer) == created


async def test_xml_answers_of_a_cached_object(bus: Served) -> None:
    """An HTTP OPEN that asks for XML still gets XML (the fast path is for JSON answers)."""
    created = await admin(bus, "CREATE", DEVICE, data={"name": "xml-sw"})
    headers = {"Flow-Auth-Token": bus.token or "", "Accept": "application/xml"}
    async with aiohttp.ClientSession() as session:
        url = f"{bus.http_url}/api/inventory/{DEVICE}/{created['id']}"
        async with session.get(url, headers=headers) as response:
            text = await response.text()
            assert response.status == 200 and response.content_type == "application/xml"
    assert "<name>xml-sw</name>" in text and created["id"] in text
