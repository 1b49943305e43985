"""First proof that a served bus answers over websockets."""

from websockets.asyncio.client import ClientConnection

from tests.support import rpc


async def test_create_then_open(ws: ClientConnection) -> None:
    """An object created over websockets can be opened by its id."""
    created = await rpc(ws, {"method": "CREATE", "endpoint": "inventory/device", "data": {"name": "sw"}})
    assert created["success"] is True
    opened = await rpc(ws, {"method": "OPEN", "endpoint": "inventory/device", "objectid": created["data"]["id"]})
    assert opened["data"] == created["data"]
