"""The HTTP mirror of the built-in inventory: statuses, paging, namespaces, parity with websockets."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from tests.gateway.helpers import DEVICES, fetch
from tests.support import Served, rpc


def unique(prefix: str = "d") -> str:
    """A fresh object id or namespace, so tests sharing the module's bus keep apart."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def test_create_answers_201_and_crud_round_trip(http: aiohttp.ClientSession) -> None:
    """POST creates (201), GET opens, PUT/PATCH/POST update, DELETE deletes, then GET answers 404."""
    status, created = await fetch(http, "POST", DEVICES, json={"name": "core-sw"})
    assert status == 201 and created["success"] is True
    path = DEVICES + created["data"]["id"]
    status, opened = await fetch(http, "GET", path)
    assert (status, opened["data"]) == (200, created["data"])
    for verb, location in (("PUT", "hall"), ("PATCH", "roof"), ("POST", "cellar")):
        status, updated = await fetch(http, verb, path, json={"location": location})
        assert (status, updated["data"]["location"], updated["data"]["name"]) == (200, location, "core-sw")
    status, deleted = await fetch(http, "DELETE", path)
    assert (status, deleted["data"]["location"]) == (200, "cellar")
    status, gone = await fetch(http, "GET", path)
    assert (status, gone["errorcode"]) == (404, "DO_NOT_EXIST")


async def test_seed_example_objectid_and_method_headers(http: aiohttp.ClientSession) -> None:
    """GET /api/inventory/inventory/device with Flow-Request-ObjectId and Flow-Request-Method OPEN opens it."""
    objectid = unique()
    await fetch(http, "POST", DEVICES, json={"id": objectid, "name": "seed"})
    headers = {"Flow-Request-ObjectId": objectid, "Flow-Request-Method": "OPEN"}
    status, envelope = await fetch(http, "GET", "/api/inventory/inventory/device", headers=headers)
    assert status == 200
    assert envelope["data"]["id"] == objectid and envelope["data"]["name"] == "seed"


async def test_query_parameters_page_sort_and_filter(http: aiohttp.ClientSession) -> None:
    """limit, page, sort and field filters in the query string page the LIST and report 'page'."""
    namespace = unique("ns")
    ns = {"Flow-Request-Namespace": namespace}
    for n in range(5):
        await fetch(http, "POST", DEVICES, headers=ns, json={"name": f"sw{n}", "location": "hall"})
    await fetch(http, "POST", DEVICES, headers=ns, json={"name": "other", "location": "roof"})
    query = {"limit": "2", "page": "1", "sort": "-name", "location": "hall"}
    status, envelope = await fetch(http, "GET", DEVICES, headers=ns, params=query)
    assert status == 200
    assert envelope["page"] == {"limit": 2, "offset": 2, "total": 5}
    assert [d["name"] for d in envelope["data"]] == ["sw2", "sw1"]


async def test_index_search_over_http(http: aiohttp.ClientSession) -> None:
    """GET on the collection with Flow-Request-Method INDEX and q searches the index entries."""
    namespace = unique("ns")
    ns = {"Flow-Request-Namespace": namespace}
    await fetch(http, "POST", DEVICES, headers=ns, json={"name": "core-router-7"})
    await fetch(http, "POST", DEVICES, headers=ns, json={"name": "edge-switch"})
    status, envelope = await fetch(http, "GET", DEVICES, headers=ns, params={"method": "INDEX", "q": "router"})
    assert status == 200
    assert [entry["title"] for entry in envelope["data"]] == ["core-router-7"]


async def test_namespaces_keep_objects_apart(http: aiohttp.ClientSession) -> None:
    """An object created in one namespace is neither opened nor listed from another."""
    objectid, here, there = unique(), unique("ns"), unique("ns")
    body = {"id": objectid, "name": "x"}
    status, _ = await fetch(http, "POST", DEVICES, headers={"Flow-Request-Namespace": here}, json=body)
    assert status == 201
    status, envelope = await fetch(http, "GET", DEVICES + objectid, headers={"Flow-Request-Namespace": there})
    assert (status, envelope["errorcode"]) == (404, "DO_NOT_EXIST")
    status, envelope = await fetch(http, "GET", DEVICES + objectid, params={"namespace": here})
    assert status == 200
    _, listed = await fetch(http, "GET", DEVICES, headers={"Flow-Request-Namespace": there})
    assert listed["data"] == [] and listed["page"]["total"] == 0


ERRORS = [
    pytest.param("GET", DEVICES + "no-such-id", {}, None, 404, "DO_NOT_EXIST", id="open-missing"),
    pytest.param("DELETE", DEVICES + "no-such-id", {}, None, 404, "DO_NOT_EXIST", id="delete-missing"),
    pytest.param("GET", "/api/inventory/inventory/nothing/", {}, None, 404, "NO_SUCH_ENDPOINT", id="unknown-endpoint"),
    pytest.param("GET", "/api/system/inventory/device/", {}, None, 404, "NO_SUCH_ENDPOINT", id="wrong-app"),
    pytest.param("POST", DEVICES, {}, b'{"location": "x"}', 422, "INVALID_DATA", id="schema-required"),
    pytest.param("POST", DEVICES, {}, b'{"name": 7}', 422, "INVALID_DATA", id="schema-type"),
    pytest.param("POST", DEVICES, {}, b'{"name": "x"', 400, "INVALID_REQUEST", id="bad-json"),
    pytest.param("POST", DEVICES, {}, b"[1, 2]", 422, "INVALID_DATA", id="json-array-of-non-objects"),
    pytest.param("POST", DEVICES, {}, b'"text"', 400, "INVALID_REQUEST", id="json-not-object"),
    pytest.param("POST", DEVICES, {}, b"", 400, "INVALID_REQUEST", id="create-without-body"),
    pytest.param("PUT", DEVICES, {}, b'{"name": "x"}', 400, "MISSING_OBJECTID", id="update-without-objectid"),
    pytest.param("DELETE", DEVICES, {}, None, 400, "MISSING_OBJECTID", id="delete-without-objectid"),
    pytest.param("GET", DEVICES + "?limit=abc", {}, None, 400, "INVALID_REQUEST", id="bad-limit"),
    pytest.param("GET", DEVICES + "?limit=5000", {}, None, 400, "INVALID_REQUEST", id="limit-over-max"),
    pytest.param("GET", DEVICES + "x", {"Flow-Request-Method": "RUN"}, None, 405, "METHOD_NOT_SUPPORTED", id="get-run"),
    pytest.param("POST", DEVICES + "x", {"Flow-Request-Method": "RUN"}, None, 405, "METHOD_NOT_SUPPORTED", id="no-run"),
    pytest.param("POST", "/api/system/system/endpoint/", {}, b"{}", 405, "METHOD_NOT_SUPPORTED", id="no-create"),
    pytest.param("GET", DEVICES, {"Authorization": "Basic %%%"}, None, 401, "AUTH_FAILED", id="malformed-basic"),
]


@pytest.mark.parametrize(("verb", "path", "headers", "body", "status", "errorcode"), ERRORS)
async def test_errors_answer_their_http_status(
    http: aiohttp.ClientSession,
    verb: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    errorcode: str,
) -> None:
    """Every error answers its errorcode's HTTP status with a full error envelope."""
    answer, envelope = await fetch(http, verb, path, headers=headers, data=body)
    assert (answer, envelope["errorcode"]) == (status, errorcode)
    assert envelope["success"] is False and envelope["status"] == 0 and envelope["dataType"] == "JSON"
    assert uuid.UUID(envelope["errorid"]) and envelope["message"]
    assert "Traceback" not in envelope["message"]


async def test_a_405_of_an_endpoint_allows_the_verbs_of_its_methods(http: aiohttp.ClientSession) -> None:
    """system/endpoint has LIST and OPEN only: a POST to it is 405 with Allow: GET."""
    async with http.post("/api/system/system/endpoint/", data=b"{}") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET"


async def test_a_405_outside_api_allows_the_routes_methods(http: aiohttp.ClientSession) -> None:
    """A path served for other methods (/healthz is GET only) is 405 with those methods in Allow."""
    async with http.post("/healthz") as response:
        envelope = orjson.loads(await response.read())
        assert (response.status, envelope["errorcode"]) == (405, "METHOD_NOT_SUPPORTED")
        assert response.headers["Allow"] == "GET, HEAD"


async def test_duplicate_id_is_conflict(http: aiohttp.ClientSession) -> None:
    """Creating an object whose id exists answers 409 CONFLICT."""
    objectid = unique()
    assert (await fetch(http, "POST", DEVICES, json={"id": objectid, "name": "a"}))[0] == 201
    status, envelope = await fetch(http, "POST", DEVICES, json={"id": objectid, "name": "b"})
    assert (status, envelope["errorcode"]) == (409, "CONFLICT")


async def test_errorid_is_in_server_log(bus: Served, http: aiohttp.ClientSession) -> None:
    """The errorid of an HTTP error is logged by the server, so an operator can find it."""
    _, envelope = await fetch(http, "GET", DEVICES + unique("missing"))
    assert envelope["errorid"] in bus.log()


async def test_system_endpoint_catalog_with_encoded_objectid(http: aiohttp.ClientSession) -> None:
    """An object id holding '/' travels percent-encoded in the last segment."""
    status, envelope = await fetch(http, "GET", "/api/system/system/endpoint/inventory%2Fdevice")
    assert status == 200
    assert envelope["data"]["name"] == "inventory/device" and envelope["data"]["application"] == "inventory"


def _shape(envelope: dict[str, Any]) -> dict[str, Any]:
    """An envelope without the per-error errorid."""
    return {key: value for key, value in envelope.items() if key != "errorid"}


async def test_same_envelopes_as_websocket(bus: Served, http: aiohttp.ClientSession) -> None:
    """An object created over HTTP opens over websockets with the same envelope, errors alike."""
    _, created = await fetch(http, "POST", DEVICES, json={"name": "parity", "tags": ["a", "b"]})
    objectid = created["data"]["id"]
    _, over_http = await fetch(http, "GET", DEVICES + objectid)
    missing = unique("missing")
    _, http_error = await fetch(http, "GET", DEVICES + missing)
    async with bus.connect() as ws:
        over_ws = await rpc(ws, {"method": "OPEN", "endpoint": "inventory/device", "objectid": objectid})
        ws_error = await rpc(ws, {"method": "OPEN", "endpoint": "inventory/device", "objectid": missing})
        ws_list = await rpc(ws, {"method": "LIST", "endpoint": "inventory/device", "parameters": {"limit": 1}})
    _, http_list = await fetch(http, "GET", DEVICES, params={"limit": "1"})
    assert over_http == over_ws
    assert list(over_http) == list(over_ws)
    assert _shape(http_error) == _shape(ws_error)
    assert list(http_error) == list(ws_error)
    assert list(http_list) == list(ws_list) and http_list["page"]["limit"] == ws_list["page"]["limit"]
