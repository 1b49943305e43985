"""Bounds on one call's input, through a served bus, over websockets and HTTP.

Values nested deeper than ``MAX_DEPTH`` and queries with more than ``MAX_FILTERS`` filters are
INVALID_REQUEST before anything is written, and the connection (or the next HTTP call) goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from flowbus.params import MAX_FILTERS
from flowbus.protocol import MAX_DEPTH
from tests.flowbus.helpers import DEVICE, call as envelope, unique
from tests.support import ENTRIES, Served, rpc, ws_connect

DEVICES = "/api/inventory/inventory/device/"


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """The websocket tests run against both websocket entries: the websocket port and the gateway's /ws."""
    return str(request.param)


@pytest.fixture
async def http(bus: Served) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session on the module's bus, logged in as admin."""
    async with aiohttp.ClientSession(base_url=bus.http_url, headers={"Flow-Auth-Token": bus.token or ""}) as session:
        yield session


async def call(session: aiohttp.ClientSession, verb: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Make one HTTP call; return its status and its JSON envelope."""
    async with session.request(verb, path, **kwargs) as response:
        envelope: dict[str, Any] = orjson.loads(await response.read())
        return response.status, envelope


def nested(levels: int) -> dict[str, Any]:
    """An object whose objects nest ``levels`` deep (itself being level 1)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def deep_data(levels: int) -> dict[str, Any]:
    """A device whose ``data`` nests exactly ``levels`` deep."""
    return {"name": "deep", "deep": nested(levels - 1)}


async def count(ws: ClientConnection, namespace: str) -> int:
    """How many devices ``namespace`` holds (a LIST that must succeed)."""
    answer = await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": namespace})
    assert answer["success"] is True, answer
    return int(answer["page"]["total"])


async def test_data_at_the_depth_limit_is_stored(ws: ClientConnection) -> None:
    """Data nested exactly MAX_DEPTH deep is stored, and LIST answers it."""
    ns = unique()
    created = await rpc(ws, {"method": "CREATE", "endpoint": DEVICE, "namespace": ns, "data": deep_data(MAX_DEPTH)})
    assert created["success"] is True, created
    assert await count(ws, ns) == 1


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 252, 253, 300], ids=["one-over", "252", "253", "300"])
async def test_data_too_deep_is_refused(ws: ClientConnection, levels: int) -> None:
    """Data nested deeper than MAX_DEPTH is INVALID_REQUEST, nothing is stored, and LIST still works."""
    ns = unique()
    message = {"method": "CREATE", "endpoint": DEVICE, "namespace": ns, "data": deep_data(levels), "requestid": 7}
    answer = await rpc(ws, message)
    assert answer["errorcode"] == "INVALID_REQUEST", answer
    assert f"nested deeper than {MAX_DEPTH} levels" in answer["message"]
    assert answer["requestid"] == 7
    assert await count(ws, ns) == 0


async def test_update_too_deep_changes_nothing(ws: ClientConnection) -> None:
    """An UPDATE whose data is too deep is INVALID_REQUEST and the object stays as it was."""
    ns = unique()
    created = await rpc(ws, {"method": "CREATE", "endpoint": DEVICE, "namespace": ns, "data": {"name": "flat"}})
    objectid = created["data"]["id"]
    update = {"method": "UPDATE", "endpoint": DEVICE, "namespace": ns, "objectid": objectid, "data": deep_data(100)}
    assert (await rpc(ws, update))["errorcode"] == "INVALID_REQUEST"
    opened = await rpc(ws, {"method": "OPEN", "endpoint": DEVICE, "namespace": ns, "objectid": objectid})
    assert opened["data"] == created["data"]


@pytest.mark.parametrize("levels", [MAX_DEPTH, 300], ids=["deep-filter", "300"])
async def test_list_filter_too_deep(ws: ClientConnection, levels: int) -> None:
    """A LIST filter whose value nests too deep is INVALID_REQUEST."""
    parameters = {"name": nested(levels)}  # parameters is one level more
    answer = await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": unique(), "parameters": parameters})
    assert answer["errorcode"] == "INVALID_REQUEST", answer
    assert "'parameters' is nested deeper" in answer["message"]


async def test_endpoint_catalog_filter_1000_deep(ws: ClientConnection) -> None:
    """system/endpoint LIST with a filter nested 1,000 deep is INVALID_REQUEST, and the catalog still answers."""
    deep = '{"a":' * 999 + "{}" + "}" * 999  # past what orjson encodes, so written out
    message = '{"method": "LIST", "endpoint": "system/endpoint", "parameters": {"name": ' + deep + "}}"
    answer = await rpc(ws, message)
    assert answer["errorcode"] == "INVALID_REQUEST", answer
    listed = await rpc(ws, {"method": "LIST", "endpoint": "system/endpoint", "parameters": {"name": DEVICE}})
    assert [row["name"] for row in listed["data"]] == [DEVICE]


def filters(number: int) -> dict[str, str]:
    """``number`` distinct exact-match filters."""
    return {f"field{i}": "x" for i in range(number)}


@pytest.mark.parametrize("method", ["LIST", "INDEX"])
@pytest.mark.parametrize("number", [MAX_FILTERS + 1, 495, 600], ids=["one-over", "495", "600"])
async def test_too_many_filters_ws(ws: ClientConnection, method: str, number: int) -> None:
    """LIST or INDEX with more than MAX_FILTERS filters is INVALID_REQUEST, and the connection goes on."""
    message = {"method": method, "endpoint": DEVICE, "namespace": unique(), "parameters": filters(number)}
    answer = await rpc(ws, message)
    assert answer["errorcode"] == "INVALID_REQUEST", answer
    assert f"At most {MAX_FILTERS} filters" in answer["message"]
    assert await count(ws, unique()) == 0


@pytest.mark.parametrize("method", ["LIST", "INDEX"])
async def test_filters_at_the_bound_ws(ws: ClientConnection, method: str) -> None:
    """Exactly MAX_FILTERS filters are accepted (they match nothing here)."""
    message = {"method": method, "endpoint": DEVICE, "namespace": unique(), "parameters": filters(MAX_FILTERS)}
    answer = await rpc(ws, message)
    assert answer["success"] is True, answer
    assert answer["data"] == []


async def test_catalog_too_many_filters(ws: ClientConnection) -> None:
    """system/endpoint LIST goes through the same filter bound."""
    message = {"method": "LIST", "endpoint": "system/endpoint", "parameters": filters(MAX_FILTERS + 1)}
    assert (await rpc(ws, message))["errorcode"] == "INVALID_REQUEST"


# -- HTTP ---------------------------------------------------------------------------------------


async def test_http_json_body_too_deep(http: aiohttp.ClientSession) -> None:
    """A JSON body nested deeper than MAX_DEPTH answers 400 INVALID_REQUEST and stores nothing."""
    ns = unique()
    headers = {"Flow-Request-Namespace": ns}
    status, envelope = await call(http, "POST", DEVICES, json=deep_data(253), headers=headers)
    assert (status, envelope["errorcode"]) == (400, "INVALID_REQUEST"), envelope
    assert f"nested deeper than {MAX_DEPTH} levels" in envelope["message"]
    status, envelope = await call(http, "POST", DEVICES, json=deep_data(MAX_DEPTH), headers=headers)
    assert status == 201, envelope
    status, envelope = await call(http, "GET", DEVICES, headers=headers)
    assert status == 200 and envelope["page"]["total"] == 1


async def test_http_xml_body_too_deep(http: aiohttp.ClientSession) -> None:
    """An XML body nested deeper than MAX_DEPTH answers 400 INVALID_REQUEST and stores nothing."""
    ns = unique()
    headers = {"Flow-Request-Namespace": ns, "Content-Type": "application/xml"}
    body = "<device><name>x</name>" + "<a>" * 300 + "v" + "</a>" * 300 + "</device>"
    status, envelope = await call(http, "POST", DEVICES, data=body.encode(), headers=headers)
    assert (status, envelope["errorcode"]) == (400, "INVALID_REQUEST"), envelope
    status, envelope = await call(http, "GET", DEVICES, headers={"Flow-Request-Namespace": ns})
    assert status == 200 and envelope["page"]["total"] == 0


@pytest.mark.parametrize("verb_method", [("GET", "LIST"), ("GET", "INDEX")], ids=["LIST", "INDEX"])
@pytest.mark.parametrize("number", [MAX_FILTERS, MAX_FILTERS + 1, 495, 600], ids=["at", "one-over", "495", "600"])
async def test_http_filters(http: aiohttp.ClientSession, verb_method: tuple[str, str], number: int) -> None:
    """Over HTTP, up to MAX_FILTERS query filters are accepted and more answer 400 INVALID_REQUEST."""
    verb, method = verb_method
    headers = {"Flow-Request-Method": method, "Flow-Request-Namespace": unique()}
    status, envelope = await call(http, verb, DEVICES, params=filters(number), headers=headers)
    if number <= MAX_FILTERS:
        assert status == 200 and envelope["data"] == [], envelope
    else:
        assert (status, envelope["errorcode"]) == (400, "INVALID_REQUEST"), envelope


async def test_a_page_of_huge_objects_is_cut_and_says_so(bus: Served) -> None:
    """A LIST whose objects pass the page's byte bound answers fewer objects, page.truncated, and the rest follows."""
    async with ws_connect(bus.ws_url, token=bus.token, max_size=None) as ws:
        ns = unique()
        pad = "x" * 900_000
        for i in range(12):
            answer = await envelope(ws, "CREATE", data={"id": f"big-{i}", "name": "big", "pad": pad}, namespace=ns)
            assert answer["success"], answer["message"]
        first = await envelope(ws, "LIST", namespace=ns, parameters={"limit": 12})
        assert first["success"] and first["page"]["truncated"] is True and first["page"]["total"] == 12
        got = len(first["data"])
        assert 1 <= got < 12
        rest = await envelope(ws, "LIST", namespace=ns, parameters={"limit": 12, "offset": got})
        assert [o["id"] for o in first["data"] + rest["data"]][: got + len(rest["data"])] == [
            f"big-{i}" for i in range(got + len(rest["data"]))
        ]
        small = await envelope(ws, "LIST", namespace=ns, parameters={"limit": 2})
        assert "truncated" not in small["page"]
