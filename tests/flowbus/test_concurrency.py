"""Concurrency over websockets: calls in flight, the per-connection cap, timeouts, connection limits,
and endpoints that fail. Served with the ``testing`` application (tests/apps.py).

Nothing here measures time: slow endpoints block on gates that the test releases, and the
assertions are on the order of answers and on error codes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.apps import SECRET
from tests.flowbus.helpers import DEVICE, unique
from tests.support import ENTRIES, PORT, Served, http_json, rpc, serve


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both websocket entries: the websocket port and the gateway's /ws."""
    return str(request.param)


APP = ("--app", "tests.apps:create_app")
GATE = "testing/gate"


def serve_testing(workdir: Path, entry: str, **env: str) -> Served:
    """A bus with the testing application and ``FLOWBUS_<NAME>`` settings from ``env``."""
    return serve(workdir, *APP, env={f"FLOWBUS_{name.upper()}": value for name, value in env.items()}, entry=entry)


@pytest.fixture(scope="module")
def testing_bus(tmp_path_factory: pytest.TempPathFactory, entry: str) -> Iterator[Served]:
    """A bus with the testing application and default settings."""
    served = serve_testing(tmp_path_factory.mktemp("testing"), entry)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def capped_bus(tmp_path_factory: pytest.TempPathFactory, entry: str) -> Iterator[Served]:
    """A bus that lets each connection have 2 calls in flight."""
    served = serve_testing(tmp_path_factory.mktemp("capped"), entry, max_in_flight="2")
    try:
        yield served
    finally:
        served.stop()


async def send(ws: ClientConnection, method: str, endpoint: str, requestid: str, **fields: Any) -> None:
    await ws.send(json.dumps({"method": method, "endpoint": endpoint, "requestid": requestid, **fields}))


async def receive(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` answers, in the order they arrived (a hang guard, not a timed assertion)."""
    async with asyncio.timeout(60):
        return [orjson.loads(await ws.recv()) for _ in range(count)]


async def gate(ws: ClientConnection, name: str, action: str, **data: Any) -> dict[str, Any]:
    """One gate call that must succeed (not a wait: waits are sent with ``send``)."""
    answer = await rpc(ws, {"method": "RUN", "endpoint": GATE, "objectid": name, "data": {"action": action, **data}})
    assert answer["success"] is True, answer
    result: dict[str, Any] = answer["data"]
    return result


async def until_waiting(ws: ClientConnection, name: str, count: int) -> None:
    """Wait until ``count`` callers block on gate ``name`` (polls; there is no deadline but pytest's)."""
    while (await gate(ws, name, "status"))["waiting"] < count:
        await asyncio.sleep(0.01)


# -- many calls in flight -----------------------------------------------------------------------


async def test_slow_call_does_not_hold_up_a_later_one(testing_bus: Served) -> None:
    """A RUN that blocks does not hold up an OPEN sent after it on the same connection."""
    name = unique("gate")
    async with testing_bus.connect() as ws:
        created = await rpc(ws, {"method": "CREATE", "endpoint": DEVICE, "data": {"name": "x"}})
        await send(ws, "RUN", GATE, "slow", objectid=name)
        await send(ws, "OPEN", DEVICE, "open", objectid=created["data"]["id"])
        [first] = await receive(ws, 1)
        assert first["requestid"] == "open"
        assert first["data"] == created["data"]
        await send(ws, "RUN", GATE, "release", objectid=name, data={"action": "release"})
        answers = {answer["requestid"]: answer for answer in await receive(ws, 2)}
        assert answers["release"]["data"]["released"] == 1
        assert answers["slow"]["data"] == {"gate": name, "released": True}


async def test_many_calls_in_flight_on_one_connection(testing_bus: Served) -> None:
    """Fifty blocked calls are in flight on one connection at once; each answer carries its requestid."""
    name = unique("gate")
    async with testing_bus.connect() as ws, testing_bus.connect() as control:
        for i in range(50):
            await send(ws, "RUN", GATE, f"w-{i}", objectid=name)
        await until_waiting(control, name, 50)
        # Calls behind the blocked ones are still answered, in between.
        await send(ws, "LIST", DEVICE, "list", namespace=unique())
        [listed] = await receive(ws, 1)
        assert listed["requestid"] == "list" and listed["success"] is True
        assert (await gate(control, name, "release", all=True))["released"] == 50
        answers = await receive(ws, 50)
        assert sorted(answer["requestid"] for answer in answers) == sorted(f"w-{i}" for i in range(50))
        assert all(answer["success"] for answer in answers)


async def test_a_pipelined_burst_is_answered_whole(testing_bus: Served) -> None:
    """Hundreds of calls sent at once: their answers leave the bus in a few writes (more than
    FLUSH_BYTES of them), every one comes, and those answered at once keep the calls' order."""
    namespace = unique()
    async with testing_bus.connect() as ws:
        created = await rpc(
            ws, {"method": "CREATE", "endpoint": DEVICE, "namespace": namespace, "data": {"name": "x" * 200}}
        )
        objectid = created["data"]["id"]
        for i in range(400):  # every third one names a missing object: it waits for the database
            await send(ws, "OPEN", DEVICE, f"r-{i}", namespace=namespace, objectid=objectid if i % 3 else "missing")
        answers = await receive(ws, 400)
    found = [answer["requestid"] for answer in answers if answer["success"]]
    assert found == [f"r-{i}" for i in range(400) if i % 3]
    assert all(answer["data"] == created["data"] for answer in answers if answer["success"])
    missing = sorted(answer["requestid"] for answer in answers if answer.get("errorcode") == "DO_NOT_EXIST")
    assert missing == sorted(f"r-{i}" for i in range(0, 400, 3))


async def test_answers_without_requestid_still_come(testing_bus: Served) -> None:
    """Calls without a requestid are answered too, one answer each."""
    async with testing_bus.connect() as ws:
        ns = unique()
        for i in range(20):
            await ws.send(
                json.dumps({"method": "CREATE", "endpoint": DEVICE, "namespace": ns, "data": {"name": f"{i}"}})
            )
        answers = await receive(ws, 20)
        assert sorted(int(answer["data"]["name"]) for answer in answers) == list(range(20))
        assert all("requestid" not in answer for answer in answers)


# -- the in-flight cap --------------------------------------------------------------------------


async def test_in_flight_cap_stops_reading(capped_bus: Served) -> None:
    """With 2 calls in flight the server reads no further message of that connection until one finishes."""
    name = unique("gate")
    async with capped_bus.connect() as ws, capped_bus.connect() as control:
        await send(ws, "RUN", GATE, "a", objectid=name)
        await send(ws, "RUN", GATE, "b", objectid=name)
        await send(ws, "RUN", GATE, "c", objectid=name, data={"action": "touch"})
        await until_waiting(control, name, 2)
        # The touch is a quick call, but the server has not even read it: both slots are taken.
        released = await gate(control, name, "release")
        assert released == {"released": 1, "waiting": 2, "touched": 0}
        first, second = await receive(ws, 2)
        assert first["requestid"] == "a" and first["success"] is True
        assert second["requestid"] == "c" and second["data"] == {"touched": 1}
        assert (await gate(control, name, "release"))["released"] == 1
        [third] = await receive(ws, 1)
        assert third["requestid"] == "b" and third["success"] is True


async def test_in_flight_cap_is_per_connection(capped_bus: Served) -> None:
    """One connection at its cap does not stop another from being answered."""
    name = unique("gate")
    async with capped_bus.connect() as ws, capped_bus.connect() as other:
        await send(ws, "RUN", GATE, "a", objectid=name)
        await send(ws, "RUN", GATE, "b", objectid=name)
        await until_waiting(other, name, 2)
        assert (await rpc(other, {"method": "LIST", "endpoint": DEVICE, "namespace": unique()}))["success"] is True
        assert (await gate(other, name, "release", all=True))["released"] == 2
        assert sorted(answer["requestid"] for answer in await receive(ws, 2)) == ["a", "b"]


# -- timeouts -----------------------------------------------------------------------------------


async def test_call_timeout(tmp_path: Path, entry: str) -> None:
    """An endpoint that takes longer than the call timeout answers TIMEOUT; the connection goes on."""
    served = serve_testing(tmp_path, entry, call_timeout="0.2")
    try:
        async with served.connect() as ws:
            slow = {"method": "RUN", "endpoint": "testing/slow", "objectid": "x", "requestid": "t"}
            answer = await rpc(ws, {**slow, "data": {"seconds": 60}})
            assert answer["success"] is False
            assert answer["errorcode"] == "TIMEOUT"
            assert answer["requestid"] == "t"
            assert answer["errorid"] in served.log()
            blocked = await rpc(ws, {"method": "RUN", "endpoint": GATE, "objectid": unique("gate")})
            assert blocked["errorcode"] == "TIMEOUT"
            assert (await rpc(ws, {**slow, "data": {"seconds": 0}}))["data"] == {"slept": 0}
            assert (await gate(ws, unique("gate"), "status"))["slow"] == 0
    finally:
        assert served.stop() == 0


async def test_call_timeout_over_http(tmp_path: Path) -> None:
    """The call timeout holds for HTTP calls too: a slow RUN answers TIMEOUT, and the next call is served."""
    served = serve_testing(tmp_path, PORT, call_timeout="0.2")
    try:
        url = served.http_url + "/api/testing/testing/slow/x"
        headers = {"Flow-Request-Method": "RUN", "Flow-Auth-Token": served.token or ""}
        answer = await asyncio.to_thread(http_json, url, {"seconds": 60}, headers)
        assert answer["success"] is False and answer["errorcode"] == "TIMEOUT"
        assert answer["errorid"] in served.log()
        quick = await asyncio.to_thread(http_json, url, {"seconds": 0}, headers)
        assert quick["data"] == {"slept": 0}
    finally:
        assert served.stop() == 0


# -- connection limit ---------------------------------------------------------------------------


async def test_max_connections(tmp_path: Path, entry: str) -> None:
    """With FLOWBUS_MAX_CONNECTIONS=2 a third handshake is refused with HTTP 503; a freed place is taken again."""
    served = serve(tmp_path, env={"FLOWBUS_MAX_CONNECTIONS": "2"}, entry=entry)
    try:
        async with served.connect() as first, served.connect() as second:
            for ws in (first, second):
                assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE}))["success"] is True
            with pytest.raises(InvalidStatus) as info:
                async with served.connect():
                    pass
            assert info.value.response.status_code == 503
        # Both closed: the server lets new connections in again (it may take a moment to notice).
        for _ in range(1000):
            try:
                async with served.connect() as ws:
                    assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE}))["success"] is True
                    break
            except InvalidStatus:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("no connection was accepted after the others closed")
    finally:
        served.stop()


async def test_max_connections_with_concurrent_handshakes(tmp_path: Path, entry: str) -> None:
    """Handshakes racing each other never let more connections in than the limit."""
    served = serve(tmp_path, env={"FLOWBUS_MAX_CONNECTIONS": "2"}, entry=entry)
    try:

        async def attempt() -> ClientConnection | None:
            try:
                return await served.connect()  # type: ignore[no-any-return]
            except InvalidStatus as exc:
                assert exc.response.status_code == 503
                return None

        results = await asyncio.gather(*(attempt() for _ in range(20)))
        opened = [ws for ws in results if ws is not None]
        try:
            assert len(opened) == 2
        finally:
            for ws in opened:
                await ws.close()
    finally:
        served.stop()


# -- endpoints that fail ------------------------------------------------------------------------


async def test_endpoint_bug_is_internal_error(testing_bus: Served) -> None:
    """An endpoint raising a plain exception answers INTERNAL_ERROR with no detail; the log has errorid and detail."""
    async with testing_bus.connect() as ws:
        await ws.send(json.dumps({"method": "RUN", "endpoint": "testing/boom", "objectid": "x", "requestid": 1}))
        text = await ws.recv()
        answer = orjson.loads(text)
        assert answer["errorcode"] == "INTERNAL_ERROR"
        assert answer["message"] == "Internal error"
        assert answer["requestid"] == 1
        assert uuid.UUID(answer["errorid"])
        for leak in ("Traceback", "RuntimeError", SECRET, "boom:", ".py", "line "):
            assert leak not in text
        log = testing_bus.log()
        assert answer["errorid"] in log
        assert SECRET in log and "Traceback" in log
        assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": unique()}))["success"] is True


async def test_unserializable_answer_is_internal_error(testing_bus: Served) -> None:
    """An endpoint answering something JSON cannot carry gets INTERNAL_ERROR, not silence."""
    async with testing_bus.connect() as ws:
        await send(ws, "RUN", "testing/unserializable", "u", objectid="x")
        [answer] = await receive(ws, 1)
        assert answer["requestid"] == "u"
        assert answer["errorcode"] == "INTERNAL_ERROR"
        assert answer["errorid"] in testing_bus.log()
        assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE, "namespace": unique()}))["success"] is True
