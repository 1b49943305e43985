"""The ``system`` application: discovery of every endpoint the bus serves."""

from __future__ import annotations

from typing import Any

from flowbus import Application, Call, DoesNotExist, Endpoint, Page, Query, Services

__all__ = ["EndpointCatalog", "create_app"]


class EndpointCatalog(Endpoint):
    """LIST and OPEN of every registered endpoint, with its methods and schema."""

    description = "Every endpoint of the bus, with its methods and schema"

    def __init__(self, name: str = "system/endpoint") -> None:
        super().__init__(name)
        self._catalog: list[dict[str, Any]] = []

    async def startup(self, services: Services) -> None:
        # The registry is frozen before startup, so the catalog is built once.
        self._catalog = services.describe()

    async def list(self, call: Call) -> Page:
        query = Query.from_parameters(call.parameters)
        rows = [row for row in self._catalog if _matches(row, query.filters)]
        if query.sort:
            rows.sort(key=lambda row: str(row.get(query.sort or "")), reverse=query.descending)
        return Page(rows[query.offset : query.offset + query.limit], query.limit, query.offset, len(rows))

    async def open(self, call: Call) -> dict[str, Any]:
        name = (call.objectid or "").strip("/")
        for row in self._catalog:
            if row["name"] == name:
                return row
        raise DoesNotExist(f"No endpoint named {name[:128]!r}")


def _matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    return all(str(row.get(key)) == str(value) for key, value in filters.items())


def create_app() -> Application:
    """Build the system application."""
    app = Application("system", description="The bus describing itself")
    app.add(EndpointCatalog())
    return app
