"""A client session: create, read, change, search and delete devices over one connection.

Run a bus (`make serve`), then: `python examples/client_session.py`.
The bus URL comes from FLOWBUS_URL (default ws://127.0.0.1:8765), the token from FLOWBUS_TOKEN.
"""

import asyncio
import os

from flowbus.client import Client
from flowbus.errors import DoesNotExist


async def main() -> None:
    url = os.environ.get("FLOWBUS_URL", "ws://127.0.0.1:8765")
    async with Client(url, token=os.environ.get("FLOWBUS_TOKEN")) as bus:
        # Calls made concurrently share the connection; answers are matched by requestid.
        made = await asyncio.gather(
            bus.create("inventory/device", {"name": "core-sw-1", "location": "Stockholm"}),
            bus.create("inventory/device", {"name": "edge-rtr-7", "location": "Oslo"}),
        )
        print("created", [device["name"] for device in made])

        changed = await bus.update("inventory/device", made[0]["id"], {"location": "Uppsala"})
        print("updated", changed["name"], "->", changed["location"])

        found = await bus.index("inventory/device", parameters={"q": "edge"})
        print("search 'edge' found", [entry["title"] for entry in found])

        for device in made:
            await bus.delete("inventory/device", device["id"])
        try:
            await bus.open("inventory/device", made[0]["id"])
        except DoesNotExist as error:
            print("after delete:", error.errorcode)


if __name__ == "__main__":
    asyncio.run(main())
