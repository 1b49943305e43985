"""The Python client against a served bus: verbs, concurrency, typed errors, reconnects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowbus.client import Client
from flowbus.errors import DoesNotExist, FlowBusError, InvalidData, NoSuchEndpoint, Unavailable
from tests.support import ENTRIES, Served, serve


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both websocket entries: the websocket port and the gateway's /ws."""
    return str(request.param)


async def test_every_verb(bus: Served) -> None:
    """create, open, update, list, index and delete each do what their method says."""
    async with Client(bus.ws_url, token=bus.token, namespace="client-verbs") as client:
        made = await client.create("inventory/device", {"name": "alpha", "location": "north"})
        assert (await client.open("inventory/device", made["id"]))["name"] == "alpha"
        changed = await client.update("inventory/device", made["id"], {"location": "south"})
        assert changed["location"] == "south" and changed["name"] == "alpha"
        listed = await client.list("inventory/device")
        assert [d["id"] for d in listed] == [made["id"]]
        found = await client.index("inventory/device", parameters={"q": "alph"})
        assert found[0]["id"] == made["id"]
        await client.delete("inventory/device", made["id"])
        assert await client.list("inventory/device") == []


async def test_concurrent_calls_share_one_connection(bus: Served) -> None:
    """Many calls made at once over one client all get their own answers."""
    async with Client(bus.ws_url, token=bus.token, namespace="client-concurrent") as client:
        names = [f"device-{i}" for i in range(50)]
        made = await asyncio.gather(*(client.create("inventory/device", {"name": n}) for n in names))
        assert [m["name"] for m in made] == names
        opened = await asyncio.gather(*(client.open("inventory/device", m["id"]) for m in made))
        assert opened == made


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        pytest.param("open", ("inventory/device", "missing"), DoesNotExist, id="DO_NOT_EXIST"),
        pytest.param("create", ("inventory/device", {"name": 7}), InvalidData, id="INVALID_DATA"),
        pytest.param("list", ("no/such",), NoSuchEndpoint, id="NO_SUCH_ENDPOINT"),
    ],
)
async def test_errors_are_typed(bus: Served, method: str, args: tuple[object, ...], error: type[FlowBusError]) -> None:
    """A failed call raises the class of its errorcode, carrying the errorid."""
    async with Client(bus.ws_url, token=bus.token) as client:
        with pytest.raises(error) as caught:
            await getattr(client, method)(*args)
    assert caught.value.errorcode == error.errorcode
    assert caught.value.errorid and caught.value.errorid in bus.log()


async def test_unreachable_bus_raises_unavailable(tmp_path: Path) -> None:
    """Connecting to a port nobody listens on gives up with Unavailable after the retries."""
    served = serve(tmp_path)
    url = served.ws_url
    served.stop()
    with pytest.raises(Unavailable):
        async with Client(url, retries=1, backoff=0.01):
            pass


async def test_reconnects_after_server_restart(tmp_path: Path) -> None:
    """After the bus restarts, the next call reconnects; reads are repeated, writes are not."""
    first = serve(tmp_path / "a")
    port = first.ws_url.rsplit(":", 1)[1]
    async with Client(first.ws_url, token=first.token, retries=20, backoff=0.05, max_backoff=0.5) as client:
        made = await client.create("inventory/device", {"name": "survivor"})
        first.stop()
        second = serve(tmp_path / "a", "--ws-port", port, "--data", str(first.data))
        try:
            assert (await client.open("inventory/device", made["id"]))["name"] == "survivor"
        finally:
            second.stop()
        with pytest.raises(Unavailable):
            await client.create("inventory/device", {"name": "while down"})
