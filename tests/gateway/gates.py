"""A test application for a served bus: ``gates/gate`` RUN with objectid X answers once a client
has made ``gates/open`` RUN with objectid X, so a flow that calls it stays RUNNING until then."""

from __future__ import annotations

import asyncio
from typing import Any

from flowbus import Application, Call, Endpoint


def create_app() -> Application:
    """The ``gates`` application (tests only)."""
    opened: dict[str, asyncio.Event] = {}
    app = Application("gates", description="Calls that answer when a client says so (tests only)")

    @app.endpoint("gates/gate")
    class Gate(Endpoint):
        async def run(self, call: Call) -> Any:
            await opened.setdefault(call.objectid or "", asyncio.Event()).wait()
            return {"gate": call.objectid}

    @app.endpoint("gates/open")
    class Open(Endpoint):
        async def run(self, call: Call) -> Any:
            opened.setdefault(call.objectid or "", asyncio.Event()).set()
            return {"opened": call.objectid}

    return app
