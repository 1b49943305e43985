"""The ``system`` application: discovery of every endpoint the bus serves, and of what the
caller may call (``system/whoami``)."""

from __future__ import annotations

from typing import Any

from flowbus import Application, Call, DoesNotExist, Endpoint, Method, Page, Query, Services

__all__ = ["EndpointCatalog", "WhoAmI", "create_app"]

_METHODS = [Method.LIST, Method.OPEN, Method.CREATE, Method.UPDATE, Method.DELETE, Method.INDEX, Method.RUN]


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


class WhoAmI(Endpoint):
    """RUN ``me``: the caller's identity and, per endpoint, the methods it may call there.

    Answers ``{"subject", "roles", "namespaces", "namespace", "endpoints"}``: ``namespaces`` the
    ones the caller is limited to (null: all), ``namespace`` the call's, and ``endpoints`` maps
    every endpoint the caller may call something on, in that namespace, to those methods (in the
    order of ``system/endpoint``). The bus's authorizer decides each, as it would the call; a RUN
    operation that also needs a named permission is checked when it is called. The built-in
    roles may all ask; a role defined as data needs a rule allowing RUN on ``system/whoami``.
    """

    description = "RUN me: who the caller is, and per endpoint the methods it may call"

    def __init__(self, name: str = "system/whoami") -> None:
        super().__init__(name)
        self._catalog: list[dict[str, Any]] = []

    async def startup(self, services: Services) -> None:
        self._catalog = services.describe()

    async def run(self, call: Call) -> dict[str, Any]:
        if call.objectid != "me":
            raise DoesNotExist("The only operation of system/whoami is 'me'")
        identity, permits = call.identity, call.services.permits
        endpoints: dict[str, list[str]] = {}
        for row in self._catalog:
            name = row["name"]
            methods = [str(m) for m in _METHODS if m in row["methods"] and permits(identity, m, name, call.namespace)]
            if methods:
                endpoints[name] = methods
        namespaces = identity.namespaces
        return {
            "subject": identity.subject,
            "roles": sorted(identity.roles),
            "namespaces": None if namespaces is None else sorted(namespaces),
            "namespace": call.namespace,
            "endpoints": endpoints,
        }


def _matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    return all(str(row.get(key)) == str(value) for key, value in filters.items())


def create_app() -> Application:
    """Build the system application."""
    app = Application("system", description="The bus describing itself")
    app.add(EndpointCatalog())
    app.add(WhoAmI())
    return app
