"""The Python client's subscriptions: ``async for`` over changes, resumed after the connection
drops under the client, without a gap or a repeat; streamed calls return their final answer."""

from __future__ import annotations

import asyncio
from typing import Any

from flowbus.client import Client
from tests.flowbus.helpers import DEVICE, ok, unique
from tests.support import Served


async def test_subscribe_resumes_after_the_connection_drops(bus: Served) -> None:
    namespace = unique("ns")
    seen: list[dict[str, Any]] = []
    async with Client(bus.ws_url, token=bus.token, namespace=namespace) as client, bus.connect() as writer:
        events = client.subscribe(DEVICE)
        first = asyncio.ensure_future(anext(events))
        while not client._subscribed:  # until the bus answered the SUBSCRIBE
            await asyncio.sleep(0.01)
        await ok(writer, "CREATE", DEVICE, data={"name": "before"}, namespace=namespace)
        seen.append(await asyncio.wait_for(first, 30))
        assert client._ws is not None
        client._ws.transport.abort()  # the network drops under the client
        for name in ("while-down-1", "while-down-2"):
            await ok(writer, "CREATE", DEVICE, data={"name": name}, namespace=namespace)
        while len(seen) < 3:
            seen.append(await asyncio.wait_for(anext(events), 30))
        await ok(writer, "CREATE", DEVICE, data={"name": "after"}, namespace=namespace)
        seen.append(await asyncio.wait_for(anext(events), 30))
        await events.aclose()
    assert [e["data"]["name"] for e in seen] == ["before", "while-down-1", "while-down-2", "after"]
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(set(seqs))


async def test_a_streamed_run_returns_its_final_answer(bus: Served) -> None:
    flow = {
        "name": unique("streamed"),
        "startState": "s",
        "states": {
            "s": {"action": "set", "vars": {"a": 1}, "transitions": [{"on": "success", "to": "e"}]},
            "e": {"action": "end"},
        },
    }
    async with Client(bus.ws_url, token=bus.token) as client:
        created = await client.create("flows/flow", flow)
        answer = await client.run("flows/flow", created["id"], parameters={"stream": True})
    assert answer["status"] == "SUCCESS"
