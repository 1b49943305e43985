"""Context ids: the number every execution gets, unique across the bus, and the calls that take
it wherever they take an execution id; and an event aimed at one execution by a ``contextId``
given in its parameters."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.conftest import Clocked
from tests.endpoints.flows.helpers import EVENT, EXECUTION, FLOW
from tests.flowbus.helpers import ok, unique


def listener(name: str) -> dict[str, Any]:
    """A flow that waits for the event ``go``, then ends with the event's input."""
    return {
        "name": name,
        "startState": "listen",
        "states": {
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
