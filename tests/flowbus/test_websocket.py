"""The seven methods, namespaces, connection defaults and discovery, over websockets to a served bus."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from endpoints.inventory import DEVICE_SCHEMA
from tests.flowbus.helpers import DEVICE, TIMESTAMP, call, fails, ok, unique
from tests.support import ENTRIES, Served, rpc, ws_connect


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both websocket entries: the websocket port and the gateway's /ws."""
    return str(request.param)


@pytest.fixture
def ns() -> str:
    """A namespace of this test's own on the shared bus."""
    return unique("ns")


async def create(ws: ClientConnection, ns: str, **data: Any) -> dict[str, Any]:
    result: dict[str, Any] = await ok(ws, "CREATE", namespace=ns, data=data)
    return result


# -- CREATE and OPEN ----------------------------------------------------------------------------


async def test_create_answers_the_stored_object(ws: ClientConnection, ns: str) -> None:
    """CREATE answers the object: a generated id, created == updated (RFC 3339, Z, seconds) and its fields."""
    obj = await create(ws, ns, name="core-sw-1", location="lab", tags=["a", "b"])
    assert set(obj) == {"id", "created", "updated", "version", "name", "location", "tags"}
    assert TIMESTAMP.fullmatch(obj["created"]) and obj["created"] == obj["updated"]
    assert (obj["name"], obj["location"], obj["tags"]) == ("core-sw-1", "lab", ["a", "b"])
    assert await ok(ws, "OPEN", objectid=obj["id"], namespace=ns) == obj


async def test_generated_ids_are_uuid7_in_creation_order(ws: ClientConnection, ns: str) -> None:
    """Generated ids are UUIDv7: each one sorts after the ids made before it (the id index grows at its end)."""
    ids = [(await create(ws, ns, name=f"sw-{i}"))["id"] for i in range(5)]
    assert all(uuid.UUID(objectid).version == 7 for objectid in ids)
    assert ids == sorted(ids) and len(set(ids)) == 5


async def test_create_with_client_id_then_conflict(ws: ClientConnection, ns: str) -> None:
    """CREATE keeps a client-chosen id; a second CREATE with that id is CONFLICT and changes nothing."""
    obj = await create(ws, ns, id="sw-1", name="first")
    assert obj["id"] == "sw-1"
    await fails(ws, "CONFLICT", "CREATE", namespace=ns, data={"id": "sw-1", "name": "second"})
    assert (await ok(ws, "OPEN", objectid="sw-1", namespace=ns))["name"] == "first"


INVALID = [
    ({}, "name"),
    ({"name": 5}, "name"),
    ({"name": ""}, "name"),
    ({"name": "ok", "location": ["lab"]}, "location"),
    ({"name": "ok", "tags": ["a", 3]}, "tags.1"),
    ({"name": "ok", "id": "has space"}, "id"),
    ({"name": "ok", "id": 17}, "id"),
]


@pytest.mark.parametrize(
    ("data", "field"),
    INVALID,
    ids=["missing-name", "name-not-string", "name-empty", "location-list", "tag-not-string", "bad-id", "int-id"],
)
async def test_create_invalid_data_names_the_field(
    ws: ClientConnection, ns: str, data: dict[str, Any], field: str
) -> None:
    """CREATE with data that fails the schema is INVALID_DATA whose message names the failing field."""
    answer = await fails(ws, "INVALID_DATA", "CREATE", namespace=ns, data=data)
    assert f"'{field}'" in answer["message"]
    page = await call(ws, "LIST", namespace=ns)
    assert page["page"]["total"] == 0


async def test_update_invalid_data_changes_nothing(ws: ClientConnection, ns: str) -> None:
    """UPDATE whose merged object fails the schema is INVALID_DATA and leaves the object as it was."""
    obj = await create(ws, ns, name="sw")
    answer = await fails(ws, "INVALID_DATA", "UPDATE", objectid=obj["id"], namespace=ns, data={"name": 7})
    assert "'name'" in answer["message"]
    assert await ok(ws, "OPEN", objectid=obj["id"], namespace=ns) == obj


# -- UPDATE -------------------------------------------------------------------------------------


async def test_update_is_a_partial_merge(ws: ClientConnection, ns: str) -> None:
    """UPDATE changes only the given fields, keeps id and created, and moves updated."""
    obj = await create(ws, ns, name="sw", location="lab", description="old")
    # Timestamps have second precision: wait for the clock to pass the creation second.
    while datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") <= obj["updated"]:
        await asyncio.sleep(0.05)
    data = {"location": "rack 4", "address": "10.0.0.1", "id": "other", "created": "1999-01-01T00:00:00Z"}
    updated = await ok(ws, "UPDATE", objectid=obj["id"], namespace=ns, data=data)
    assert updated["id"] == obj["id"]
    assert updated["created"] == obj["created"]
    assert updated["updated"] > obj["updated"]
    assert TIMESTAMP.fullmatch(updated["updated"])
    assert (updated["name"], updated["description"]) == ("sw", "old")
    assert (updated["location"], updated["address"]) == ("rack 4", "10.0.0.1")
    assert await ok(ws, "OPEN", objectid=obj["id"], namespace=ns) == updated
    await fails(ws, "DO_NOT_EXIST", "OPEN", objectid="other", namespace=ns)


# -- DELETE -------------------------------------------------------------------------------------


async def test_delete_then_open(ws: ClientConnection, ns: str) -> None:
    """DELETE answers what was deleted; then OPEN, UPDATE and DELETE of it are DO_NOT_EXIST."""
    obj = await create(ws, ns, name="gone")
    assert await ok(ws, "DELETE", objectid=obj["id"], namespace=ns) == obj
    await fails(ws, "DO_NOT_EXIST", "OPEN", objectid=obj["id"], namespace=ns)
    await fails(ws, "DO_NOT_EXIST", "UPDATE", objectid=obj["id"], namespace=ns, data={"name": "x"})
    await fails(ws, "DO_NOT_EXIST", "DELETE", objectid=obj["id"], namespace=ns)
    await fails(ws, "DO_NOT_EXIST", "INDEX", objectid=obj["id"], namespace=ns)


async def test_open_unknown_id(ws: ClientConnection, ns: str) -> None:
    """OPEN of an id that never existed is DO_NOT_EXIST with the seed's message."""
    answer = await fails(ws, "DO_NOT_EXIST", "OPEN", objectid="3a472a78-4e3e-4858-8acc-eb754f9d1328", namespace=ns)
    assert answer["message"] == "Object does not exist"


# -- RUN, unknown endpoints ---------------------------------------------------------------------


async def test_run_not_supported(ws: ClientConnection) -> None:
    """RUN on inventory/device is METHOD_NOT_SUPPORTED."""
    await fails(ws, "METHOD_NOT_SUPPORTED", "RUN", objectid="x", data={})


@pytest.mark.parametrize("method", ["CREATE", "UPDATE", "DELETE", "INDEX", "RUN"])
async def test_system_endpoint_is_read_only(ws: ClientConnection, method: str) -> None:
    """system/endpoint takes only LIST and OPEN."""
    await fails(ws, "METHOD_NOT_SUPPORTED", method, "system/endpoint", objectid="x", data={})


@pytest.mark.parametrize("endpoint", ["inventory/nothing", "nothing", "inventory", "inventory/device/extra"])
async def test_no_such_endpoint(ws: ClientConnection, endpoint: str) -> None:
    """An endpoint name nobody registered is NO_SUCH_ENDPOINT."""
    await fails(ws, "NO_SUCH_ENDPOINT", "LIST", endpoint)


async def test_method_any_case(ws: ClientConnection, ns: str) -> None:
    """Methods are case-insensitive on the wire."""
    obj = await ok(ws, "create", namespace=ns, data={"name": "lower"})
    assert await ok(ws, "Open", objectid=obj["id"], namespace=ns) == obj


@pytest.mark.parametrize("endpoint", ["/inventory/device", "inventory/device/", "/inventory/device/"])
async def test_endpoint_slashes(ws: ClientConnection, ns: str, endpoint: str) -> None:
    """An endpoint with a leading or trailing '/' is the same endpoint."""
    obj = await create(ws, ns, name="slash")
    assert await ok(ws, "OPEN", endpoint, objectid=obj["id"], namespace=ns) == obj


# -- LIST ---------------------------------------------------------------------------------------


@pytest.fixture
async def seven(ws: ClientConnection, ns: str) -> list[dict[str, Any]]:
    """Seven devices d0..d6 in this test's namespace, created in order."""
    return [
        await create(ws, ns, name=f"d{i}", location="lab" if i % 2 else "hall", port=22 if i < 3 else 80, rank=i)
        for i in range(7)
    ]


PAGES = [
    ({"limit": 3}, [0, 1, 2], 3, 0),
    ({"limit": 3, "page": 1}, [3, 4, 5], 3, 3),
    ({"limit": 3, "page": 2}, [6], 3, 6),
    ({"limit": 3, "page": 3}, [], 3, 9),
    ("limit=3&page=1", [3, 4, 5], 3, 3),
    ({"limit": 2, "offset": 5}, [5, 6], 2, 5),
    ("offset=5&limit=2", [5, 6], 2, 5),
    ({"page": 1}, [], 30, 30),
    ({}, [0, 1, 2, 3, 4, 5, 6], 30, 0),
]


@pytest.mark.parametrize(
    ("parameters", "expected", "limit", "offset"),
    PAGES,
    ids=[
        "first-page",
        "second-page",
        "last-page",
        "past-the-end",
        "query-string",
        "offset",
        "offset-string",
        "page-default-limit",
        "all",
    ],
)
async def test_list_paging(
    ws: ClientConnection,
    ns: str,
    seven: list[dict[str, Any]],
    parameters: Any,
    expected: list[int],
    limit: int,
    offset: int,
) -> None:
    """LIST pages in creation order and reports limit, offset and total beside data."""
    answer = await call(ws, "LIST", namespace=ns, parameters=parameters)
    assert answer["success"] is True
    assert answer["data"] == [seven[i] for i in expected]
    assert answer["page"] == {"limit": limit, "offset": offset, "total": 7}


SORTS = [
    ("name", [0, 1, 2, 3, 4, 5, 6]),
    ("-name", [6, 5, 4, 3, 2, 1, 0]),
    ("-rank", [6, 5, 4, 3, 2, 1, 0]),
    ("location", [0, 2, 4, 6, 1, 3, 5]),
    ("-location", [5, 3, 1, 6, 4, 2, 0]),
    ("-created", [6, 5, 4, 3, 2, 1, 0]),
]


@pytest.mark.parametrize(("sort", "expected"), SORTS, ids=[s for s, _ in SORTS])
async def test_list_sort(
    ws: ClientConnection, ns: str, seven: list[dict[str, Any]], sort: str, expected: list[int]
) -> None:
    """sort orders by a field, '-' for descending, ties in creation order (reversed when descending)."""
    data = await ok(ws, "LIST", namespace=ns, parameters={"sort": sort})
    assert [obj["name"] for obj in data] == [f"d{i}" for i in expected]


FILTERS = [
    ({"location": "lab"}, [1, 3, 5]),
    ({"location": "lab", "port": 22}, [1]),
    ("port=22", [0, 1, 2]),
    ({"port": "22"}, [0, 1, 2]),
    ({"port": 80, "location": "hall"}, [4, 6]),
    ("rank=3", [3]),
    ({"name": "d4"}, [4]),
    ({"location": "nowhere"}, []),
    ({"colour": "red"}, []),
    ({"port": "22", "limit": 2, "sort": "-name"}, [2, 1]),
]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    FILTERS,
    ids=[
        "string",
        "two-fields",
        "query-string-number",
        "string-matches-number",
        "number",
        "query-string-rank",
        "name",
        "no-match",
        "unknown-field",
        "with-paging-and-sort",
    ],
)
async def test_list_filters(
    ws: ClientConnection, ns: str, seven: list[dict[str, Any]], parameters: Any, expected: list[int]
) -> None:
    """field=value filters match exactly; a query-string "22" matches the number 22; unknown fields match nothing."""
    answer = await call(ws, "LIST", namespace=ns, parameters=parameters)
    assert [obj["name"] for obj in answer["data"]] == [f"d{i}" for i in expected]
    if not (isinstance(parameters, dict) and "limit" in parameters):
        assert answer["page"]["total"] == len(expected)


@pytest.mark.parametrize(
    "parameters",
    [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"page": -1}, "page=abc", {"sort": "a b"}, {"a.b": 1}],
    ids=["limit-zero", "limit-too-big", "limit-word", "page-negative", "page-word", "bad-sort", "bad-filter-name"],
)
async def test_list_bad_parameters(ws: ClientConnection, parameters: Any) -> None:
    """Bad paging, sort or filter names are INVALID_REQUEST."""
    await fails(ws, "INVALID_REQUEST", "LIST", parameters=parameters, requestid="bad-params")


async def test_list_empty_namespace(ws: ClientConnection, ns: str) -> None:
    """LIST of a namespace without objects is an empty page with total 0."""
    answer = await call(ws, "LIST", namespace=ns)
    assert answer["data"] == []
    assert answer["page"] == {"limit": 30, "offset": 0, "total": 0}


# -- INDEX --------------------------------------------------------------------------------------


async def test_index_with_objectid(ws: ClientConnection, ns: str) -> None:
    """INDEX with an objectid answers the index entry: id, title, updated and the searchable fields."""
    obj = await create(ws, ns, name="core-sw", location="lab", tags=["x"], port=22)
    entry = await ok(ws, "INDEX", objectid=obj["id"], namespace=ns)
    assert entry == {
        "id": obj["id"],
        "title": "core-sw",
        "updated": obj["updated"],
        "version": 1,
        "name": "core-sw",
        "description": None,
        "location": "lab",
        "address": None,
    }


async def test_index_search_best_match_first(ws: ClientConnection, ns: str) -> None:
    """INDEX with q answers only matching entries, best match first, with page metadata."""
    weak = await create(
        ws,
        ns,
        name="lab box",
        description="a long text that mentions core once and much later a switch among many other words "
        "such as cable rack power supply fan chassis module port panel",
        location="lab",
    )
    strong = await create(ws, ns, name="core switch", description="core switch of the core", location="hall")
    await create(ws, ns, name="edge router", description="nothing relevant", location="lab")
    answer = await call(ws, "INDEX", namespace=ns, parameters={"q": "core switch"})
    assert [entry["id"] for entry in answer["data"]] == [strong["id"], weak["id"]]
    assert answer["page"] == {"limit": 30, "offset": 0, "total": 2}
    assert set(answer["data"][0]) == {"id", "title", "updated", "version", "name", "description", "location", "address"}


async def test_index_search_with_filters(ws: ClientConnection, ns: str) -> None:
    """INDEX combines q with exact filters and paging."""
    a = await create(ws, ns, name="core one", location="lab")
    await create(ws, ns, name="core two", location="hall")
    c = await create(ws, ns, name="core three", location="lab")
    answer = await call(ws, "INDEX", namespace=ns, parameters="q=core&location=lab")
    assert sorted(entry["id"] for entry in answer["data"]) == sorted([a["id"], c["id"]])
    assert answer["page"]["total"] == 2
    one = await call(ws, "INDEX", namespace=ns, parameters={"q": "core", "location": "lab", "limit": 1, "page": 1})
    assert len(one["data"]) == 1 and one["page"] == {"limit": 1, "offset": 1, "total": 2}


async def test_index_search_prefix_and_no_match(ws: ClientConnection, ns: str) -> None:
    """Search terms match as prefixes; terms nobody has match nothing; q of punctuation only lists all."""
    obj = await create(ws, ns, name="firewall-01")
    assert [e["id"] for e in await ok(ws, "INDEX", namespace=ns, parameters={"q": "fire"})] == [obj["id"]]
    assert await ok(ws, "INDEX", namespace=ns, parameters={"q": "water"}) == []
    assert [e["id"] for e in await ok(ws, "INDEX", namespace=ns, parameters={"q": '"*)('})] == [obj["id"]]


# -- namespaces ---------------------------------------------------------------------------------


async def test_namespaces_never_cross(ws: ClientConnection) -> None:
    """The same id in two namespaces is two objects; LIST, INDEX, OPEN, UPDATE and DELETE stay in their own."""
    a, b = unique("a"), unique("b")
    in_a = await ok(ws, "CREATE", namespace=a, data={"id": "same", "name": "alpha shared"})
    in_b = await ok(ws, "CREATE", namespace=b, data={"id": "same", "name": "beta shared"})
    assert await ok(ws, "OPEN", objectid="same", namespace=a) == in_a
    assert await ok(ws, "OPEN", objectid="same", namespace=b) == in_b
    await fails(ws, "DO_NOT_EXIST", "OPEN", objectid="same")
    assert await ok(ws, "LIST", namespace=a) == [in_a]
    assert [e["title"] for e in await ok(ws, "INDEX", namespace=a, parameters={"q": "shared"})] == ["alpha shared"]
    assert await ok(ws, "INDEX", namespace=a, parameters={"q": "beta"}) == []
    await ok(ws, "UPDATE", objectid="same", namespace=a, data={"location": "a-only"})
    assert "location" not in await ok(ws, "OPEN", objectid="same", namespace=b)
    await ok(ws, "DELETE", objectid="same", namespace=a)
    await fails(ws, "DO_NOT_EXIST", "OPEN", objectid="same", namespace=a)
    assert await ok(ws, "OPEN", objectid="same", namespace=b) == in_b
    assert await ok(ws, "LIST", namespace=b) == [in_b]


# -- connection defaults ------------------------------------------------------------------------


async def test_endpoint_from_connection_path(bus: Served) -> None:
    """On a connection opened on /inventory/device, the seed's messages (no endpoint) work."""
    async with bus.connect("/inventory/device", token=None) as ws:
        created = await rpc(ws, {"method": "CREATE", "token": bus.token, "data": {"name": "seed-style"}})
        assert created["success"] is True
        objectid = created["data"]["id"]
        opened = await rpc(ws, {"method": "OPEN", "token": bus.token, "objectid": objectid})
        assert opened["data"] == created["data"]
        # A message's own endpoint still wins.
        catalog = await rpc(
            ws, {"method": "OPEN", "endpoint": "system/endpoint", "objectid": DEVICE, "token": bus.token}
        )
        assert catalog["data"]["name"] == DEVICE
        assert (await rpc(ws, {"method": "DELETE", "objectid": objectid, "token": bus.token}))["success"] is True


async def test_connection_on_unknown_path(bus: Served) -> None:
    """A connection opened on an unknown path is accepted; its calls answer NO_SUCH_ENDPOINT."""
    async with bus.connect("/inventory/nothing") as ws:
        await fails(ws, "NO_SUCH_ENDPOINT", "LIST", None)


@pytest.mark.parametrize(
    ("path", "bearer"),
    [("/inventory/device?token={t}", False), ("?token={t}", False), ("/inventory/device", True)],
    ids=["query-token-with-path", "query-token", "bearer-header"],
)
async def test_connection_token(bus: Served, path: str, bearer: bool) -> None:
    """A token given at the handshake is the default token of every message on the connection."""
    headers = {"Authorization": f"Bearer {bus.token}"} if bearer else None
    async with ws_connect(bus.ws_url + path.format(t=bus.token), additional_headers=headers) as ws:
        answer = await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": unique()})
        assert answer["success"] is True


# -- requestid ----------------------------------------------------------------------------------


@pytest.mark.parametrize("requestid", ["c-17", 17, 0, "", 2**63], ids=["string", "int", "zero", "empty", "big-int"])
async def test_requestid_echo(ws: ClientConnection, ns: str, requestid: str | int) -> None:
    """A string or integer requestid is echoed, unchanged, on success and on error answers."""
    assert (await call(ws, "LIST", namespace=ns, requestid=requestid))["requestid"] == requestid
    assert (await call(ws, "OPEN", namespace=ns, objectid="none", requestid=requestid))["requestid"] == requestid
    assert (await call(ws, "OPEN", namespace=ns, requestid=requestid))["requestid"] == requestid
    assert (await call(ws, "FETCH", requestid=requestid))["requestid"] == requestid


async def test_no_requestid_no_field(ws: ClientConnection) -> None:
    """An answer to a call without a requestid has no requestid field."""
    assert "requestid" not in await call(ws, "LIST", namespace=unique())
    assert "requestid" not in await call(ws, "OPEN")


# -- discovery ----------------------------------------------------------------------------------


async def test_system_endpoint_lists_inventory_device(ws: ClientConnection) -> None:
    """system/endpoint LIST shows inventory/device with its methods and schema."""
    answer = await call(ws, "LIST", "system/endpoint")
    rows = {row["name"]: row for row in answer["data"]}
    assert {DEVICE, "system/endpoint"} <= set(rows)
    assert answer["page"]["total"] == len(rows)
    device = rows[DEVICE]
    assert device["methods"] == ["LIST", "OPEN", "CREATE", "UPDATE", "DELETE", "INDEX"]
    assert device["schema"] == DEVICE_SCHEMA
    assert device["application"] == "inventory"
    assert rows["system/endpoint"]["methods"] == ["LIST", "OPEN"]


async def test_system_endpoint_open(ws: ClientConnection) -> None:
    """system/endpoint OPEN of inventory/device answers its entry; an unknown name is DO_NOT_EXIST."""
    entry = await ok(ws, "OPEN", "system/endpoint", objectid=DEVICE)
    assert entry["id"] == DEVICE
    assert entry["methods"] == ["LIST", "OPEN", "CREATE", "UPDATE", "DELETE", "INDEX"]
    assert entry["schema"] == DEVICE_SCHEMA
    assert await ok(ws, "OPEN", "system/endpoint", objectid="/" + DEVICE) == entry
    await fails(ws, "DO_NOT_EXIST", "OPEN", "system/endpoint", objectid="inventory/nothing")


async def test_system_endpoint_filter(ws: ClientConnection) -> None:
    """system/endpoint LIST filters by field."""
    rows = await ok(ws, "LIST", "system/endpoint", parameters={"application": "inventory"})
    assert [row["name"] for row in rows] == [DEVICE]
