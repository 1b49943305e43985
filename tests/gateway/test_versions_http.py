"""Versions over HTTP, end to end: ETag on a created object, If-Match making writes conditional."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.flowbus.helpers import unique
from tests.gateway.helpers import DEVICES, fetch


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
