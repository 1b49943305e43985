"""Versions over HTTP, end to end: ETag on a created object, If-Match making writes conditional."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.flowbus.helpers import unique
from tests.gateway.helpers import DEVICES, fetch
from tests.support import Served, serving


async def created_device(http: aiohttp.ClientSession, namespace: str) -> tuple[dict[str, Any], str | None]:
    """Create a device over HTTP; return it and the answer's ETag header."""
    headers = {"Flow-Request-Namespace": namespace}
    async with http.post(DEVICES, json={"name": "v", "count": 1}, headers=headers) as response:
        assert response.status == 201
        envelope: dict[str, Any] = await response.json()
        return envelope["data"], response.headers.get("ETag")


async def test_stale_if_match_is_conflict(http: aiohttp.ClientSession) -> None:
    """An UPDATE or DELETE whose If-Match names an old version answers 409 CONFLICT and changes nothing."""
    ns = unique()
    headers = {"Flow-Request-Namespace": ns}
    device, tag = await created_device(http, ns)
    assert device["version"] == 1
    assert tag == f'"{device["version"]}"'
    path = DEVICES + device["id"]
    status, updated = await fetch(http, "PUT", path, json={"count": 2}, headers={**headers, "If-Match": tag})
    assert status == 200 and updated["data"]["count"] == 2, updated
    stale = {**headers, "If-Match": tag}
    status, answer = await fetch(http, "PUT", path, json={"count": 3}, headers=stale)
    assert (status, answer["errorcode"]) == (409, "CONFLICT"), answer
    status, answer = await fetch(http, "DELETE", path, headers=stale)
    assert (status, answer["errorcode"]) == (409, "CONFLICT"), answer
    status, opened = await fetch(http, "GET", path, headers=headers)
    assert status == 200 and opened["data"] == updated["data"]


async def test_malformed_if_match(http: aiohttp.ClientSession) -> None:
    """A malformed If-Match answers 400 INVALID_REQUEST and the object stays as it was."""
    ns = unique()
    headers = {"Flow-Request-Namespace": ns}
    device, _ = await created_device(http, ns)
    path = DEVICES + device["id"]
    for value in ('W/"1"', '"1", "2"', "one"):
        status, answer = await fetch(http, "PUT", path, json={"count": 9}, headers={**headers, "If-Match": value})
        assert (status, answer["errorcode"]) == (400, "INVALID_REQUEST"), answer
    status, opened = await fetch(http, "GET", path, headers=headers)
    assert status == 200 and opened["data"] == device


async def test_if_match_any_version(http: aiohttp.ClientSession) -> None:
    """If-Match: * writes whatever the version."""
    ns = unique()
    headers = {"Flow-Request-Namespace": ns, "If-Match": "*"}
    device, _ = await created_device(http, ns)
    status, updated = await fetch(http, "PUT", DEVICES + device["id"], json={"count": 5}, headers=headers)
    assert status == 200 and updated["data"]["count"] == 5, updated


@pytest.fixture(scope="module", params=["cached", "uncached"])
def etag_bus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus whose OPENs are answered from its cache, and one with the cache off (every OPEN reads)."""
    env = {"FLOWBUS_CACHE_MB": "64" if request.param == "cached" else "0"}
    with serving(tmp_path_factory.mktemp(f"etag-{request.param}"), env=env) as served:
        yield served


@pytest.mark.parametrize("namespace", ["", "site.a"])
async def test_every_object_answer_carries_its_etag(etag_bus: Served, namespace: str) -> None:
    """CREATE, OPEN (GET) and UPDATE (PUT and PATCH) answer ``ETag: "<version>"``, from the cache or
    not and whether or not the request is a plain GET; the tag read from an OPEN works as If-Match."""
    headers = {"Flow-Auth-Token": etag_bus.token or ""}
    if namespace:
        headers["Flow-Request-Namespace"] = namespace
    async with aiohttp.ClientSession(base_url=etag_bus.http_url, headers=headers) as http:
        async with http.post(DEVICES, json={"name": "e"}) as response:
            created = (await response.json())["data"]
            assert (response.status, response.headers.get("ETag")) == (201, '"1"')
        path = DEVICES + created["id"]
        for _ in range(2):  # the second read may come from the cache
            async with http.get(path) as response:
                assert (response.status, response.headers.get("ETag")) == (200, '"1"')
                tag = response.headers["ETag"]
        async with http.put(path, json={"location": "lab"}, headers={"If-Match": tag}) as response:
            assert (response.status, response.headers.get("ETag")) == (200, '"2"')
        async with http.patch(path, json={"location": "hall"}, headers={"If-Match": '"2"'}) as response:
            assert (response.status, response.headers.get("ETag")) == (200, '"3"')
        async with http.get(path, headers={"Accept": "application/xml"}) as response:
            assert (response.status, response.headers.get("ETag")) == (200, '"3"')
        async with http.get(DEVICES) as response:  # a LIST has no ETag
            assert response.status == 200 and "ETag" not in response.headers
        async with http.delete(path) as response:
            assert response.status == 200 and "ETag" not in response.headers
