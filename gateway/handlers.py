"""The gateway's request handlers: translate, dispatch, render."""

from __future__ import annotations

from aiohttp import web

from flowbus.errors import FlowBusError
from flowbus.protocol import Method, Response
from gateway.keys import DISPATCHER, TABLES
from gateway.translate import BODY_METHODS, read_data, render, to_call

__all__ = ["api", "openapi"]

_PREFIX = "/api/"


async def api(request: web.Request) -> web.Response:
    """Serve ``/api/<app>/<endpoint...>/<objectid>``: one bus call per HTTP request."""
    app = request.app
    dispatcher = app[DISPATCHER]
    peer = request.remote or ""
    response: Response
    created = False
    try:
        call, credentials = to_call(
            request.method, _tail(request), request.headers, request.query, app[TABLES].apps, peer
        )
        if call.method in BODY_METHODS:
            call.data = read_data(call.method, await request.read(), request.headers.get("Content-Type", ""))
    except FlowBusError as exc:
        response = dispatcher.fail(exc, None, peer=peer)
    else:
        response = await dispatcher.handle(call, credentials)
        created = call.method is Method.CREATE
    status, headers, body = render(response, request.headers.get("Accept", ""), created=created)
    return web.Response(status=status, headers=headers, body=body)


def _tail(request: web.Request) -> str:
    """The raw (percent-encoded) path after ``/api/``, so an encoded ``/`` in an object id survives."""
    raw = request.rel_url.raw_path
    return raw[len(_PREFIX) :] if raw.startswith(_PREFIX) else request.match_info["tail"]


async def openapi(request: web.Request) -> web.Response:
    """Serve the OpenAPI document built at startup."""
    return web.Response(body=request.app[TABLES].openapi, content_type="application/json")
