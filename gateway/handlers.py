"""The gateway's request handlers: translate, dispatch, render."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from flowbus.auth.base import Credentials
from flowbus.dispatcher import Dispatcher
from flowbus.errors import FlowBusError
from flowbus.protocol import Method, Request, Response, encode_stored
from gateway.events import stream_events, wants_events
from gateway.keys import TABLES, Tables
from gateway.middlewares import last_resort
from gateway.translate import (
    BODY_METHODS,
    JSON_CONTENT_TYPE,
    allowed_verbs,
    plain_open,
    read_data,
    render,
    to_call,
    wants_xml,
)

__all__ = ["make_api", "openapi"]

_PREFIX = "/api/"
_NO_QUERY: Mapping[str, str] = MappingProxyType({})
# module constants: reading an enum member off its class runs a descriptor
_CREATE, _OPEN = Method.CREATE, Method.OPEN
_ALL_METHODS = frozenset(Method)


def make_api(dispatcher: Dispatcher, tables: Tables) -> Handler:
    """The handler of ``/api/<app>/<endpoint...>/<objectid>``: one bus call per HTTP request.

    The dispatcher and the tables are bound here, once, rather than looked up in the
    application on every request (``tables`` is filled at startup, so it is read per call).
    It answers its own failures (see :mod:`gateway.middlewares`).
    """

    async def api(request: web.Request) -> web.StreamResponse:
        headers = request.headers
        accept = headers.get(hdrs.ACCEPT, "")
        json_ok = not (accept and wants_xml(accept))
        peer = request.remote or ""
        try:
            response: Response
            created = False
            call: Request | None = None
            try:
                # a plain GET of an object (the commonest request) is read without the rest of to_call
                plain = plain_open(request.method, request.raw_path, headers, tables.apps)
                if plain is not None:
                    endpoint, objectid, token = plain
                    call = Request(_OPEN, endpoint, objectid, token)
                    credentials = Credentials(token, None, None, None, peer)
                else:
                    call, credentials = to_call(
                        request.method, _tail(request), headers, _query(request), tables.apps, peer
                    )
                    if wants_events(call):
                        return await stream_events(request, dispatcher, call, credentials)
                if call.method in BODY_METHODS:
                    call.data = read_data(call.method, await request.read(), headers.get(hdrs.CONTENT_TYPE, ""))
            except FlowBusError as exc:
                response = dispatcher.fail(exc, None, peer=peer)
            else:
                response = await dispatcher.dispatch(call, credentials)
                if response.stored is not None and json_ok:  # an OPEN from the cache: its bytes as they are
                    return web.Response(body=encode_stored(response.stored), content_type=JSON_CONTENT_TYPE)
                created = call.method is _CREATE
            status, answer_headers, body = render(response, accept, created=created)
            if status == 405:
                answer_headers["Allow"] = _allow(dispatcher, call)
            return web.Response(status=status, headers=answer_headers, body=body)
        except Exception as exc:  # a body over the limit, an answer that is not JSON, a bug
            return last_resort(request, exc)

    return api


def _allow(dispatcher: Dispatcher, call: Request | None) -> str:
    """The verbs a 405 allows: those that carry a method of the call's endpoint (every verb the
    gateway maps when the call could not be read)."""
    entry = dispatcher.registry.get(call.endpoint) if call is not None else None
    return allowed_verbs(entry.handlers.keys() if entry is not None else _ALL_METHODS)


def _tail(request: web.Request) -> str:
    """The raw (percent-encoded) path after ``/api/``, so an encoded ``/`` in an object id survives."""
    raw = request.rel_url.raw_path
    return raw[len(_PREFIX) :] if raw.startswith(_PREFIX) else request.match_info["tail"]


def _query(request: web.Request) -> Mapping[str, str]:
    """The decoded query string; without one, an empty mapping that costs no parsing."""
    return request.query if request.rel_url.raw_query_string else _NO_QUERY


async def openapi(request: web.Request) -> web.Response:
    """Serve the OpenAPI document built at startup."""
    return web.Response(body=request.app[TABLES].openapi, content_type="application/json")
