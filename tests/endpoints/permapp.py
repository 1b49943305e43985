"""A test application whose RUN ``purge`` needs the named permission ``demo.purge``.

Served with ``--app tests.endpoints.permapp:create_app``; ``demo/thing`` RUN answers
``{"ran": <operation>, "by": <caller>}``. Only ``purge`` needs a permission.
"""

from __future__ import annotations

from typing import Any

from flowbus import Application, Call, Endpoint

__all__ = ["create_app"]


class Thing(Endpoint):
    description = "RUN purge needs demo.purge; other operations only the right to RUN"
    permissions = {"purge": "demo.purge"}

    async def run(self, call: Call) -> dict[str, Any]:
        return {"ran": call.objectid, "by": call.identity.subject}


def create_app() -> Application:
    app = Application("demo", description="Named permissions of RUN operations")
    app.add(Thing("demo/thing"))
    return app
