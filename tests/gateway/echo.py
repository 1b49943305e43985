"""A test application whose endpoints answer the call they got, so tests see the translation."""

from __future__ import annotations

from typing import Any

from flowbus import Application, Call, Endpoint


class Echo(Endpoint):
    """Supports all seven methods; each answers what the endpoint was asked."""

    description = "Answers the call it got"

    @staticmethod
    def _echo(call: Call) -> dict[str, Any]:
        return {
            "method": str(call.method),
            "endpoint": call.endpoint,
            "objectid": call.objectid,
            "namespace": call.namespace,
            "parameters": call.parameters,
            "data": call.data,
        }

    async def list(self, call: Call) -> list[Any]:
        return [self._echo(call)]

    async def open(self, call: Call) -> Any:
        return self._echo(call)

    async def create(self, call: Call) -> Any:
        return self._echo(call)

    async def update(self, call: Call) -> Any:
        return self._echo(call)

    async def delete(self, call: Call) -> Any:
        return self._echo(call)

    async def index(self, call: Call) -> Any:
        return self._echo(call)

    async def run(self, call: Call) -> Any:
        return self._echo(call)


def create_app() -> Application:
    """The ``echo`` application: ``echo/call`` and the deeper ``echo/deep/call``."""
    app = Application("echo", description="Echoes calls (tests only)")
    app.add(Echo("echo/call"))
    app.add(Echo("echo/deep/call"))
    return app
