"""Context ids: the number every execution gets, unique across the bus, and the calls that take
it wherever they take an execution id; and an event aimed at one execution by a ``contextId``
given in its parameters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection

from endpoints.flows import Engine, ManualClock, create_app as create_flows
from endpoints.flows.contexts import ContextIds, context_id_of
from flowbus.config import Settings
from flowbus.node import build_bus
from flowbus.store.cache import CachedStore
from flowbus.store.sqlite import SQLiteStore
from tests.endpoints.flows.conftest import PASSWORD, START, Clocked
from tests.endpoints.flows.helpers import EVENT, EXECUTION, FLOW
from tests.flowbus.helpers import fails, ok, unique
from tests.support import ws_connect


def listener(name: str) -> dict[str, Any]:
    """A flow that sets a variable, waits for the event ``go``, then ends with the event's input."""
    return {
        "name": name,
        "startState": "begin",
        "states": {
            "begin": {"action": "set", "vars": {"n": 1}, "transitions": [{"on": "success", "to": "listen"}]},
            "listen": {"action": "wait", "event": "go", "transitions": [{"on": "go", "to": "heard"}]},
            "heard": {"action": "end", "output": "=event.input"},
        },
    }


async def waiting(ws: ClientConnection, flow: dict[str, Any], namespace: str = "", **parameters: Any) -> Any:
    """Start ``flow`` and answer its execution once it waits."""
    return await ok(ws, "RUN", FLOW, objectid=flow["id"], namespace=namespace, parameters={"wait": True, **parameters})


async def http(clocked: Clocked, verb: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {clocked.token}"}) as session,
        session.request(verb, clocked.http + path, json=body, headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def test_a_context_id_in_parameters_moves_that_execution_only(clocked: Clocked, cws: ClientConnection) -> None:
    """``POST /api/flows/flows/event/?contextId=<A>`` moves A, not every execution waiting for the event."""
    flow = await ok(cws, "CREATE", FLOW, data=listener(unique("aimed")))
    first, second = [await waiting(cws, flow) for _ in range(2)]
    status, answer = await http(
        clocked,
        "POST",
        f"/api/flows/flows/event/?contextId={first['id']}",
        {"input": {"to": "first"}},
        **{"Flow-Request-Method": "RUN", "Flow-Request-ObjectId": "go"},
    )
    assert status == 200, answer
    assert answer["data"]["transitions"] == [{"contextId": first["id"], "state": "heard"}]
    assert answer["data"]["executions"] == []
    assert (await ok(cws, "OPEN", EXECUTION, objectid=second["id"]))["status"] == "WAITING"
    # over websockets, the same in parameters
    moved = await ok(cws, "RUN", EVENT, objectid="go", parameters={"contextId": second["id"]}, data={})
    assert moved["transitions"] == [{"contextId": second["id"], "state": "heard"}]


async def test_every_execution_has_its_own_context_id(cws: ClientConnection) -> None:
    """A positive integer, shown by RUN, OPEN and LIST (context and short form), distinct for each."""
    flow = await ok(cws, "CREATE", FLOW, data=listener(unique("numbered")))
    started = [await waiting(cws, flow) for _ in range(5)]
    numbers = [execution["contextId"] for execution in started]
    assert all(type(n) is int and 0 < n < 2**63 for n in numbers)
    assert len(set(numbers)) == 5
    for execution in started:
        opened = await ok(cws, "OPEN", EXECUTION, objectid=execution["id"])
        assert (opened["id"], opened["contextId"]) == (execution["id"], execution["contextId"])
    listed = await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"], "sort": "created"})
    assert [e["contextId"] for e in listed] == numbers
    short = await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"], "sort": "created", "view": "progress"})
    assert [e["contextId"] for e in short] == numbers


async def test_a_context_id_stands_for_the_execution_id(cws: ClientConnection) -> None:
    """OPEN, UPDATE, DELETE and RUN of flows/execution/<contextId>, and events by context id (a
    number or its digits, in the data or the parameters)."""
    flow = await ok(cws, "CREATE", FLOW, data=listener(unique("by-number")))
    execution = await waiting(cws, flow)
    number = execution["contextId"]
    opened = await ok(cws, "OPEN", EXECUTION, objectid=str(number))
    assert (opened["id"], opened["status"]) == (execution["id"], "WAITING")
    assert (await ok(cws, "OPEN", EXECUTION, objectid=str(number), parameters={"state": "begin"}))["name"] == "begin"
    assert (await ok(cws, "OPEN", EXECUTION, objectid=str(number), parameters={"view": "progress"}))["id"] == opened[
        "id"
    ]
    tagged = await ok(cws, "UPDATE", EXECUTION, objectid=str(number), data={"addTags": ["a", "b"]})
    assert tagged["tags"] == ["a", "b"]
    untagged = await ok(cws, "UPDATE", EXECUTION, objectid=str(number), data={"removeTags": ["a"]})
    assert untagged["tags"] == ["b"]
    await fails(cws, "CONFLICT", "RUN", EXECUTION, objectid=str(number), parameters={"operation": "input"})
    moved = await ok(cws, "RUN", EVENT, objectid="go", data={"contextId": number, "input": 1})
    assert moved["transitions"] == [{"contextId": execution["id"], "state": "heard"}]
    again = await waiting(cws, flow)
    moved = await ok(
        cws, "RUN", EVENT, objectid="go", data={"input": 2}, parameters={"contextId": str(again["contextId"])}
    )
    assert moved["transitions"] == [{"contextId": again["id"], "state": "heard"}]
    stopped = await waiting(cws, flow)
    deleted = await ok(cws, "DELETE", EXECUTION, objectid=str(stopped["contextId"]))
    assert (deleted["id"], deleted["status"]) == (stopped["id"], "CANCELED")


async def test_an_event_answers_context_ids_when_asked(cws: ClientConnection) -> None:
    """``ids=contextId``: the answer names the executions it moved and started by their context ids."""
    name = unique("answered")
    flow = await ok(cws, "CREATE", FLOW, data=listener(name) | {"triggers": [f"{name}-go"]})
    execution = await waiting(cws, flow, tags=name)
    trigger = await ok(cws, "RUN", EVENT, objectid=f"{name}-go", data={}, parameters={"ids": "contextId"})
    (started,) = trigger["executions"]
    assert type(started["contextId"]) is int and started["state"] == "begin"
    opened = await ok(cws, "OPEN", EXECUTION, objectid=str(started["contextId"]))
    assert opened["flow"]["id"] == flow["id"]
    moved = await ok(cws, "RUN", EVENT, objectid="go", data={"tags": [name]}, parameters={"ids": "contextId"})
    assert moved["transitions"] == [{"contextId": execution["contextId"], "state": "heard"}]
    await fails(cws, "INVALID_REQUEST", "RUN", EVENT, objectid="go", data={}, parameters={"ids": "uuid"})


async def test_bad_and_unknown_context_ids(cws: ClientConnection) -> None:
    flow = await ok(cws, "CREATE", FLOW, data=listener(unique("unknown")))
    execution = await waiting(cws, flow)
    for objectid in ("999999999", "9223372036854775807", "99999999999999999999", "0"):
        await fails(cws, "DO_NOT_EXIST", "OPEN", EXECUTION, objectid=objectid)
    await fails(cws, "DO_NOT_EXIST", "RUN", EVENT, objectid="go", data={"contextId": 999999999})
    await fails(cws, "DO_NOT_EXIST", "RUN", EVENT, objectid="go", parameters={"contextId": "999999999"}, data={})
    bads: list[Any] = [0, -1, 2**63, 1.5, True, ["1"], {}]
    for bad in bads:
        await fails(cws, "INVALID_DATA", "RUN", EVENT, objectid="go", data={"contextId": bad})
    await fails(
        cws,
        "INVALID_REQUEST",
        "RUN",
        EVENT,
        objectid="go",
        data={"contextId": execution["contextId"]},
        parameters={"contextId": str(execution["contextId"] + 1)},
    )
    # the same execution named twice, by its id and by its number, is still two spellings
    assert (await ok(cws, "OPEN", EXECUTION, objectid=execution["id"]))["status"] == "WAITING"


async def test_a_context_id_finds_the_execution_in_any_namespace_the_caller_may_use(
    clocked: Clocked, cws: ClientConnection
) -> None:
    """Called in the default namespace, a context id reaches an execution of another namespace,
    for a caller who may use that namespace; for one who may not, there is no such execution."""
    site, other = unique("site"), unique("other")
    flow = await ok(cws, "CREATE", FLOW, namespace=site, data=listener(unique("far")))
    execution = await waiting(cws, flow, namespace=site)
    number = execution["contextId"]
    opened = await ok(cws, "OPEN", EXECUTION, objectid=str(number))
    assert opened["id"] == execution["id"]
    assert (await ok(cws, "UPDATE", EXECUTION, objectid=str(number), data={"addTags": ["x"]}))["tags"] == ["x"]
    user = unique("user")
    data = {"username": user, "password": "a-long-enough-password", "roles": ["operator"], "namespaces": [other]}
    await ok(cws, "CREATE", "auth/user", data=data)
    login = await ok(cws, "CREATE", "auth/token", data={"username": user, "password": data["password"]})
    async with clocked.connect(login["token"]) as limited:
        for method, extra in (("OPEN", {}), ("UPDATE", {"data": {"addTags": ["y"]}}), ("DELETE", {})):
            answer = await fails(
                limited, "DO_NOT_EXIST", method, EXECUTION, objectid=str(number), namespace=other, **extra
            )
            assert str(number) in answer["message"]
        await fails(limited, "DO_NOT_EXIST", "RUN", EVENT, objectid="go", namespace=other, data={"contextId": number})
    assert (await ok(cws, "OPEN", EXECUTION, objectid=execution["id"], namespace=site))["tags"] == ["x"]
    moved = await ok(cws, "RUN", EVENT, objectid="go", data={"contextId": number}, parameters={"ids": "contextId"})
    assert moved["transitions"] == [{"contextId": number, "state": "heard"}]
    done = await ok(cws, "OPEN", EXECUTION, objectid=execution["id"], namespace=site, parameters={"view": "progress"})
    assert done["currentState"] == "heard"


async def test_executions_stored_before_context_ids_keep_working(clocked: Clocked, cws: ClientConnection) -> None:
    """An execution record without a contextId (a database from before) is opened, listed,
    tagged and moved by its id as ever; an event that asks for context ids names it by its id."""
    flow = await ok(cws, "CREATE", FLOW, data=listener(unique("old")))
    current = await waiting(cws, flow, tags="old")
    record = await ok(cws, "OPEN", EXECUTION, objectid=current["id"])
    await ok(cws, "DELETE", EXECUTION, objectid=current["id"])
    store = clocked.engine.repository.store
    internal = await store.get(EXECUTION, "", current["id"])
    assert internal is not None
    old = {k: v for k, v in internal.items() if k not in ("contextId", "created", "updated", "version")}
    old |= {"id": unique("old-execution"), "status": "WAITING", "waiting": True, "tags": ["old"]}
    await store.insert(EXECUTION, "", old, lambda obj: "")
    opened = await ok(cws, "OPEN", EXECUTION, objectid=old["id"])
    assert "contextId" not in opened and opened["status"] == "WAITING" == record["status"]
    listed = await ok(cws, "LIST", EXECUTION, parameters={"flow": flow["id"], "status": "WAITING"})
    assert [e["id"] for e in listed] == [old["id"]] and "contextId" not in listed[0]
    await ok(cws, "UPDATE", EXECUTION, objectid=old["id"], data={"addTags": ["kept"]})
    moved = await ok(cws, "RUN", EVENT, objectid="go", data={"tags": ["old", "kept"]}, parameters={"ids": "contextId"})
    assert moved["transitions"] == [{"contextId": old["id"], "state": "heard"}]


async def test_two_allocators_on_one_store_never_hand_out_the_same_number(tmp_path: Path) -> None:
    """Two stores on one SQLite file (as two processes have), each with its read cache and an
    allocator of small blocks, taking numbers at once: every number is handed out once, each
    allocator's numbers rise, and the counter is past all of them."""
    stores = [CachedStore(SQLiteStore(tmp_path / "flowbus.db"), 1 << 20) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        allocators = [ContextIds(block=7) for _ in stores]
        for allocator, store in zip(allocators, stores, strict=True):
            allocator.open(store)
        taken = await asyncio.gather(*(allocator.take() for _ in range(150) for allocator in allocators))
        assert len(set(taken)) == len(taken) == 300
        assert min(taken) == 1
        for index in range(2):
            own = taken[index::2]
            assert own == sorted(own)
        counter = await stores[0].inner.get("flows/counter", "", "contextId")
        assert counter is not None and counter["next"] > max(taken)
        assert (counter["next"] - 1) % 7 == 0
    finally:
        for store in stores:
            await store.close()


def test_what_spells_a_context_id() -> None:
    assert [context_id_of(v) for v in (1, "1", "0042", 2**63 - 1, str(2**63 - 1))] == [1, 1, 42, 2**63 - 1, 2**63 - 1]
    for value in (0, -1, 2**63, "0", "", "-1", "1.0", " 1", "1 ", "٣", "1e3", True, 1.0, None, [1], "x" * 20):
        assert context_id_of(value) is None, value


async def test_a_restart_numbers_the_unfinished_executions_stored_before_context_ids(tmp_path: Path) -> None:
    """A bus that starts on a store holding executions without context ids (from before them)
    gives one to each that has not ended; the ended ones stay reachable by their id."""
    flags = {"data": tmp_path, "ws_port": 0, "http_port": 0, "admin_password": PASSWORD}
    olds: dict[str, dict[str, Any]] = {}
    for run in range(2):
        flows = create_flows(4, ManualClock(START))
        engine = next(work for work in flows.background if isinstance(work, Engine))
        bus, _ = build_bus(Settings.load(flags, env={}), [flows])
        await bus.start()
        try:
            async with ws_connect(bus.url("websocket")) as ws:
                login = {"username": "admin", "password": PASSWORD}
                token = (await ok(ws, "CREATE", "auth/token", data=login))["token"]
            async with ws_connect(bus.url("websocket"), token=token) as ws:
                if run == 0:
                    flow = await ok(ws, "CREATE", FLOW, data=listener("old-flow"))
                    current = await waiting(ws, flow)
                    stored = await engine.repository.store.get(EXECUTION, "", current["id"])
                    assert stored is not None
                    for status in ("WAITING", "SUCCESS"):
                        old = {
                            k: v for k, v in stored.items() if k not in ("contextId", "created", "updated", "version")
                        }
                        olds[status] = old | {"id": unique("old"), "status": status}
                        await engine.repository.store.insert(EXECUTION, "", olds[status], lambda obj: "")
                    continue
                numbered = await ok(ws, "OPEN", EXECUTION, objectid=olds["WAITING"]["id"])
                assert type(numbered["contextId"]) is int
                by_number = await ok(ws, "OPEN", EXECUTION, objectid=str(numbered["contextId"]))
                assert by_number["id"] == olds["WAITING"]["id"]
                moved = await ok(ws, "RUN", EVENT, objectid="go", data={"contextId": numbered["contextId"]})
                assert moved["transitions"] == [{"contextId": olds["WAITING"]["id"], "state": "heard"}]
                ended = await ok(ws, "OPEN", EXECUTION, objectid=olds["SUCCESS"]["id"])
                assert "contextId" not in ended
        finally:
            await bus.stop()
