"""The aiohttp application and its lifecycle as a bus transport."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.handshake import Connections, Handshake
from flowbus.registry import Registry
from gateway import flows_config, integrator, smart_flows
from gateway.flux import PREFIX as FLUX_PREFIX, Flux
from gateway.handlers import make_api, openapi
from gateway.keys import DISPATCHER, REGISTRY, SETTINGS, SOCKETS, TABLES, Sockets, Tables
from gateway.middlewares import cors, failures, no_auth_guard, quiet_client_mistakes
from gateway.openapi import build_openapi
from gateway.websocket import PATH as WS_PATH, close_sockets, websocket

__all__ = ["DISPATCHER", "REGISTRY", "SETTINGS", "TABLES", "HttpGateway", "create_app"]


async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}`` while serving, 503 ``closing`` while shutting down."""
    closing = request.app[DISPATCHER].closing
    return web.json_response({"status": "closing" if closing else "ok"}, status=503 if closing else 200)


def _tables(registry: Registry) -> Tables:
    """The lookup tables and the OpenAPI document, derived from the registry (frozen by then)."""
    registry.freeze()
    apps = MappingProxyType({entry.endpoint.name: entry.app for entry in registry.entries()})
    return Tables(apps, orjson.dumps(build_openapi(registry)))


def create_app(
    dispatcher: Dispatcher, registry: Registry, settings: Settings, connections: Connections | None = None
) -> web.Application:
    """Build the gateway's aiohttp application; ``connections`` is the websocket cap shared with
    the websocket port (a cap of its own if not given)."""
    app = web.Application(client_max_size=settings.max_message_size, middlewares=_middlewares(settings))
    app[DISPATCHER] = dispatcher
    app[REGISTRY] = registry
    app[SETTINGS] = settings
    app[TABLES] = tables = _tables(registry)
    connections = connections if connections is not None else Connections(settings.max_connections)
    app[SOCKETS] = Sockets(connections, Handshake(settings))
    app.router.add_get("/healthz", healthz)
    app.router.add_get(WS_PATH, websocket)
    app.router.add_get(WS_PATH + "/{endpoint:.*}", websocket)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/client/flowbus.js", client_js)
    app.router.add_get("/", console_page)
    app.router.add_static("/console/", STATIC / "console")
    smart_flows.add_routes(app.router)
    app.router.add_route("*", "/api/{tail:.*}", make_api(dispatcher, tables))
    app.router.add_routes(integrator.ROUTES)  # integrator.io's Flow API, /v1/flows
    app.router.add_routes(flows_config.ROUTES)  # the flows configuration API, /flows
    app.router.add_route("*", FLUX_PREFIX + "{tail:.*}", Flux(dispatcher).handle)  # docs/FLOWS.md
    return app


def _middlewares(settings: Settings) -> list[Middleware]:
    """The error boundary, outermost; the guard against other sites only without authentication;
    the CORS middleware only when CORS is on (each middleware costs every request a coroutine)."""
    guard = [no_auth_guard(settings)] if settings.no_auth else []
    return [failures, *guard] + ([cors] if settings.cors_origins else [])


STATIC = Path(__file__).parent / "static"
CLIENT_JS = (STATIC / "flowbus.js").read_bytes()
"""The browser client (an ES module), read once."""
CONSOLE_PAGE = (STATIC / "console" / "index.html").read_bytes()


async def console_page(request: web.Request) -> web.Response:
    """The web console (its script and style are served from ``/console/``)."""
    return web.Response(body=CONSOLE_PAGE, content_type="text/html", charset="utf-8")


async def client_js(request: web.Request) -> web.Response:
    """Serve the browser client, ``import { FlowBus } from "/client/flowbus.js"``."""
    return web.Response(body=CLIENT_JS, content_type="text/javascript", headers={"Cache-Control": "max-age=300"})


class HttpGateway:
    """Serves the gateway as a bus transport."""

    def __init__(
        self, dispatcher: Dispatcher, registry: Registry, settings: Settings, connections: Connections | None = None
    ) -> None:
        self.settings = settings
        quiet_client_mistakes()
        self.app = create_app(dispatcher, registry, settings, connections)
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_grace
        )
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        assert self._site is not None and self._runner.addresses
        port: int = self._runner.addresses[0][1]
        return port

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.settings.host, self.settings.http_port)
        await self._site.start()

    async def stop(self) -> None:
        """Let the calls of /ws connections finish (or answer UNAVAILABLE), close those with 1001,
        then stop serving HTTP (requests in flight get the grace period)."""
        await close_sockets(self.app[SOCKETS], self.settings.shutdown_grace)
        await self._runner.cleanup()
