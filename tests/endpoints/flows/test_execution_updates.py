"""UPDATE of an execution and flows/command: one rule for the stop type, and the version a
write is made on, as for every other object."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.endpoints.flows.helpers import EXECUTION, FLOW, approval, settle
from tests.flowbus.helpers import fails, ok, unique

COMMAND = "flows/command"


async def waiting(ws: ClientConnection, namespace: str, name: str = "updated") -> dict[str, Any]:
    flow = await ok(ws, "CREATE", FLOW, data=approval(name), namespace=namespace)
    started = await ok(ws, "RUN", FLOW, objectid=flow["id"], data={"name": "u"}, namespace=namespace)
    return await settle(ws, started["id"], namespace)


@pytest.mark.parametrize("kind", [0, 1, "0", "1"])
async def test_the_stop_type_is_an_integer_or_its_decimal_string_for_both(cws: ClientConnection, kind: Any) -> None:
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    stopped = await ok(
        cws, "UPDATE", EXECUTION, objectid=record["id"], data={"command": "stop", "type": kind}, namespace=namespace
    )
    assert stopped["status"] == "CANCELED"
    again = await waiting(cws, namespace, "commanded")
    answer = await ok(
        cws,
        "RUN",
        COMMAND,
        objectid="stop",
        data={"flow_ids": [again["flow"]["id"]], "type": kind},
        namespace=namespace,
    )
    assert answer["details"][0]["status"] == "stopped"
    assert (await ok(cws, "OPEN", EXECUTION, objectid=again["id"], namespace=namespace))["status"] == "CANCELED"


@pytest.mark.parametrize("kind", [2, "2", "one", "", " 1", None, [1]])
async def test_any_other_stop_type_is_refused_by_both(cws: ClientConnection, kind: Any) -> None:
    namespace = unique("ns")
    record = await waiting(cws, namespace)
    data = {"command": "stop", "type": kind}
    answer = await fails(
        cws, "INVALID_DATA", "UPDATE", EXECUTION, objectid=record["id"], data=data, namespace=namespace
    )
    assert answer["field"] == "type"
    data = {"flow_ids": [record["flow"]["id"]], "type": kind}
    answer = await fails(cws, "INVALID_DATA", "RUN", COMMAND, objectid="stop", data=data, namespace=namespace)
    assert answer["field"] == "type"
    assert (await ok(cws, "OPEN", EXECUTION, objectid=record["id"], namespace=namespace))["status"] == "WAITING"
