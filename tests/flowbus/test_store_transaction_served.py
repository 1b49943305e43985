"""A collection's own writes in one store transaction, through a served bus (``testing/shelf``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.endpoints.helpers import ok, refused, unique, ws_call
from tests.support import Served, serving

SHELF = "testing/shelf"


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("shelf"), "--app", "tests.apps:create_app") as served:
        yield served


async def test_a_transaction_replaces_one_object_by_another(bus: Served) -> None:
    old, new = unique("old"), unique("new")
    ok(await ws_call(bus, bus.token, "CREATE", SHELF, data={"id": old, "name": "old"}))
    replace = {"old": old, "new": {"id": new, "name": "new"}}
    answer = ok(await ws_call(bus, bus.token, "RUN", SHELF, objectid="replace", data=replace))
    assert (answer["removed"]["id"], answer["added"]["id"]) == (old, new)
    refused(await ws_call(bus, bus.token, "OPEN", SHELF, objectid=old), "DO_NOT_EXIST")
    assert ok(await ws_call(bus, bus.token, "OPEN", SHELF, objectid=new))["name"] == "new"


async def test_a_write_the_schema_refuses_undoes_the_others(bus: Served) -> None:
    """The new object has no name: INVALID_DATA, and the old one is still there."""
    old = unique("old")
    ok(await ws_call(bus, bus.token, "CREATE", SHELF, data={"id": old, "name": "old"}))
    nameless = {"id": unique("new"), "label": "no name"}
    answer = await ws_call(bus, bus.token, "RUN", SHELF, objectid="replace", data={"old": old, "new": nameless})
    refused(answer, "INVALID_DATA")
    assert ok(await ws_call(bus, bus.token, "OPEN", SHELF, objectid=old))["name"] == "old"
    refused(await ws_call(bus, bus.token, "OPEN", SHELF, objectid=nameless["id"]), "DO_NOT_EXIST")
