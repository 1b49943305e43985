"""Bad input over websockets: every kind is answered with an error envelope and the connection goes on.

Each test checks the errorcode, that the server logged the answer's errorid, and that the same
connection still answers a good call afterwards. Only websocket protocol violations close the
connection: a text frame that is not UTF-8 (1007) and a message over the size limit (1009).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError

from tests.flowbus.helpers import DEVICE, unique
from tests.support import ENTRIES, Served, rpc, serving


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both websocket entries: the websocket port and the gateway's /ws."""
    return str(request.param)


async def answered(bus: Served, ws: ClientConnection, message: str | bytes, errorcode: str) -> dict[str, Any]:
    """Send ``message``; check the error answer, the log, and that the connection still works."""
    await ws.send(message)
    answer: dict[str, Any] = orjson.loads(await ws.recv())
    assert answer["status"] == 0
    assert answer["success"] is False, answer
    assert answer["errorcode"] == errorcode, answer
    assert answer["dataType"] == "JSON"
    assert str(uuid.UUID(answer["errorid"])) == answer["errorid"]
    assert answer["errorid"] in bus.log()
    good = await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": unique(), "requestid": "good"})
    assert good["success"] is True and good["requestid"] == "good"
    return answer


async def test_not_json(bus: Served, ws: ClientConnection) -> None:
    """A text frame that is not JSON is INVALID_REQUEST."""
    answer = await answered(bus, ws, "OPEN inventory/device please", "INVALID_REQUEST")
    assert "JSON" in answer["message"]
    assert "requestid" not in answer


@pytest.mark.parametrize(
    "message",
    ["[]", '[{"method": "LIST", "endpoint": "inventory/device"}]', '"LIST"', "42", "-1.5", "null", "true"],
    ids=["empty-array", "array-of-envelope", "string", "number", "float", "null", "bool"],
)
async def test_json_not_an_object(bus: Served, ws: ClientConnection, message: str) -> None:
    """JSON that is not an object is INVALID_REQUEST."""
    answer = await answered(bus, ws, message, "INVALID_REQUEST")
    assert "object" in answer["message"]


WRONG_TYPES = [
    ("method", 1),
    ("method", ["OPEN"]),
    ("endpoint", 1),
    ("endpoint", {"name": DEVICE}),
    ("objectid", 1),
    ("objectid", ["x"]),
    ("token", 1),
    ("token", ["t"]),
    ("namespace", 1),
    ("namespace", {"ns": "a"}),
    ("parameters", 1),
    ("parameters", ["limit=1"]),
    ("data", "name=x"),
    ("data", [{"name": "x"}]),
    ("requestid", 1.5),
    ("requestid", False),
    ("requestid", {"id": 1}),
]


@pytest.mark.parametrize(
    ("name", "value"), WRONG_TYPES, ids=[f"{name}-{type(value).__name__}" for name, value in WRONG_TYPES]
)
async def test_wrong_field_type(bus: Served, ws: ClientConnection, name: str, value: Any) -> None:
    """A field of the wrong type is INVALID_REQUEST naming the field; a good requestid is still echoed."""
    message: dict[str, Any] = {
        "method": "UPDATE",
        "endpoint": DEVICE,
        "objectid": "x",
        "namespace": unique(),
        "data": {"name": "x"},
        "requestid": "r-1",
    }
    message[name] = value
    answer = await answered(bus, ws, json.dumps(message), "INVALID_REQUEST")
    assert name in answer["message"]
    if name != "requestid":
        assert answer["requestid"] == "r-1"
    else:
        assert "requestid" not in answer


@pytest.mark.parametrize("method", ["FETCH", "GET", "SUBSCRIBE-ALL", ""], ids=["word", "http-verb", "dashed", "empty"])
async def test_unknown_method(bus: Served, ws: ClientConnection, method: str) -> None:
    """An unknown method is INVALID_REQUEST, with the requestid echoed."""
    message = json.dumps({"method": method, "endpoint": DEVICE, "requestid": 5})
    answer = await answered(bus, ws, message, "INVALID_REQUEST")
    assert answer["requestid"] == 5


async def test_missing_method(bus: Served, ws: ClientConnection) -> None:
    """A message without a method is INVALID_REQUEST."""
    answer = await answered(bus, ws, json.dumps({"endpoint": DEVICE, "requestid": "m"}), "INVALID_REQUEST")
    assert "method" in answer["message"]
    assert answer["requestid"] == "m"


@pytest.mark.parametrize("method", ["OPEN", "UPDATE", "DELETE", "RUN"])
async def test_missing_objectid(bus: Served, ws: ClientConnection, method: str) -> None:
    """OPEN, UPDATE, DELETE and RUN without an objectid are MISSING_OBJECTID."""
    message = json.dumps({"method": method, "endpoint": DEVICE, "data": {"name": "x"}, "requestid": "o"})
    answer = await answered(bus, ws, message, "MISSING_OBJECTID")
    assert answer["requestid"] == "o"


async def test_missing_endpoint(bus: Served, ws: ClientConnection) -> None:
    """A message without an endpoint, on a connection without one, is INVALID_REQUEST."""
    await answered(bus, ws, json.dumps({"method": "LIST"}), "INVALID_REQUEST")


@pytest.mark.parametrize(
    "number",
    ["18446744073709551616", "-9223372036854775809", "1" + "0" * 400],
    ids=["2^64", "below-int64", "400-digits"],
)
async def test_huge_numbers(bus: Served, ws: ClientConnection, number: str) -> None:
    """An integer beyond 64 bits is INVALID_REQUEST, not silently rounded and stored."""
    ns = unique()
    message = f'{{"method": "CREATE", "endpoint": "inventory/device", "namespace": "{ns}", "requestid": "big", '
    message += f'"data": {{"name": "x", "count": {number}}}}}'
    answer = await answered(bus, ws, message, "INVALID_REQUEST")
    assert "64 bits" in answer["message"]
    assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": ns}))["page"]["total"] == 0


async def test_huge_number_in_parameters(bus: Served, ws: ClientConnection) -> None:
    """Numbers that no field can hold, in parameters, are refused or match nothing, never INTERNAL_ERROR."""
    await answered(
        bus, ws, json.dumps({"method": "LIST", "endpoint": DEVICE, "parameters": {"offset": 2**63}}), "INVALID_REQUEST"
    )
    await answered(
        bus, ws, json.dumps({"method": "LIST", "endpoint": DEVICE, "parameters": {"page": 2**62}}), "INVALID_REQUEST"
    )
    ns = unique()
    big = {"method": "LIST", "endpoint": DEVICE, "namespace": ns, "parameters": {"count": 2**64 - 1}}
    answer = await rpc(ws, big)
    assert answer["success"] is True and answer["data"] == []
    created = await rpc(
        ws, {"method": "CREATE", "endpoint": DEVICE, "namespace": ns, "data": {"name": "u64", "count": 2**64 - 1}}
    )
    assert created["data"]["count"] == 2**64 - 1
    for parameters in ({"count": 2**64 - 1}, f"count={2**64 - 1}"):
        answer = await rpc(ws, {**big, "parameters": parameters})
        assert answer["data"] == [created["data"]]


async def test_deep_nesting(bus: Served, ws: ClientConnection) -> None:
    """10000 nested arrays are INVALID_REQUEST, not a crash."""
    nested = "[" * 10000 + "]" * 10000
    message = f'{{"method": "CREATE", "endpoint": "inventory/device", "data": {{"name": "x", "deep": {nested}}}}}'
    await answered(bus, ws, message, "INVALID_REQUEST")


async def test_invalid_utf8_in_binary_frame(bus: Served, ws: ClientConnection) -> None:
    """A binary frame of invalid UTF-8 is INVALID_REQUEST."""
    answer = await answered(bus, ws, b'{"method": "LIST", "endpoint": "\xff\xfe"}', "INVALID_REQUEST")
    assert "Binary" in answer["message"]


async def test_binary_frame_with_valid_json(bus: Served, ws: ClientConnection) -> None:
    """A binary frame is refused INVALID_REQUEST even when it holds a valid envelope."""
    message = json.dumps({"method": "LIST", "endpoint": DEVICE, "requestid": "b"}).encode()
    answer = await answered(bus, ws, message, "INVALID_REQUEST")
    assert "Binary" in answer["message"]


async def test_empty_text_frame(bus: Served, ws: ClientConnection) -> None:
    """An empty text frame is INVALID_REQUEST."""
    await answered(bus, ws, "", "INVALID_REQUEST")


async def test_invalid_utf8_in_text_frame_closes_1007(bus: Served) -> None:
    """A text frame that is not UTF-8 is a protocol violation: the server closes with 1007 (RFC 6455 8.1)."""
    async with bus.connect() as ws:
        # text=True sends the bytes as a text frame as they are, without checking them.
        await ws.send(b'{"method": "LIST", "endpoint": "\xff\xfe"}', text=True)
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    async with bus.connect() as ws:
        assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": unique()}))["success"] is True


@pytest.fixture(scope="module")
def small_bus(tmp_path_factory: pytest.TempPathFactory, entry: str) -> Iterator[Served]:
    """A bus that takes messages of at most 1024 bytes."""
    with serving(tmp_path_factory.mktemp("small"), env={"FLOWBUS_MAX_MESSAGE_SIZE": "1024"}, entry=entry) as served:
        yield served


def sized(size: int) -> str:
    """A LIST envelope of exactly ``size`` bytes."""
    head = '{"method": "LIST", "endpoint": "inventory/device", "pad": "'
    return head + "x" * (size - len(head) - 2) + '"}'


async def test_message_at_the_limit(small_bus: Served) -> None:
    """A message of exactly the size limit is answered."""
    async with small_bus.connect() as ws:
        message = sized(1024)
        assert len(message) == 1024
        assert (await rpc(ws, message))["success"] is True


@pytest.mark.parametrize("size", [1025, 100_000], ids=["one-over", "far-over"])
async def test_message_over_the_limit_closes_1009(small_bus: Served, size: int) -> None:
    """A message over the size limit closes the connection with 1009 (message too big); the bus goes on."""
    async with small_bus.connect() as ws:
        await ws.send(sized(size))
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    async with small_bus.connect() as ws:
        assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE}))["success"] is True


async def test_bad_messages_in_a_row(bus: Served, tmp_path: Path) -> None:
    """A burst of bad messages on one connection is answered one for one, and the connection lives on."""
    async with bus.connect() as ws:
        bad = ["", "x", "[]", "null", '{"method": 1}', b"\x00\x01", '{"method": "OPEN", "endpoint": "a"}']
        for message in bad:
            await ws.send(message)
        answers = [orjson.loads(await ws.recv()) for _ in bad]
        assert all(answer["success"] is False for answer in answers)
        assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": unique()}))["success"] is True
