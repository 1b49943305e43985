"""A test application, ``transport``, for tests of how calls run in tasks.

* ``transport/early`` RUN enters ``asyncio.timeout(0.05)`` around a long sleep before any other
  await: its own timeout must cut only this call short.
"""

from __future__ import annotations

import asyncio

from flowbus import Application, Call, Endpoint

__all__ = ["create_app"]


class Early(Endpoint):
    description = "Times itself out (asyncio.timeout) before its first await"

    async def run(self, call: Call) -> dict[str, bool]:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(30)
        except TimeoutError:
            return {"timed_out": True}
        return {"timed_out": False}


def create_app() -> Application:
    """Build the ``transport`` application."""
    app = Application("transport", description="Endpoints for tests of the transports")
    app.add(Early("transport/early"))
    return app
