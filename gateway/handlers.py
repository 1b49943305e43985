"""The gateway's request handlers: translate, dispatch, render."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from flowbus.answers import failure
from flowbus.auth.base import Credentials
from flowbus.dispatcher import Dispatcher
from flowbus.errors import FlowBusError, TooLarge
from flowbus.protocol import Method, Request
from gateway.events import stream_events, wants_events
from gateway.keys import SETTINGS, TABLES, Tables
from gateway.rendering import render
from gateway.request import BODY_METHODS, allowed_verbs, plain_open, read_data, to_call

__all__ = ["make_api", "openapi"]

_PREFIX = "/api/"
_NO_QUERY: Mapping[str, str] = MappingProxyType({})
_ALL_METHODS = frozenset(Method)


def make_api(dispatcher: Dispatcher, tables: Tables) -> Handler:
    """The handler of ``/api/<app>/<endpoint...>/<objectid>``: one bus call per HTTP request.

    The dispatcher and the tables are bound here, once, rather than looked up in the
    application on every request.
    What the pipeline answers is rendered here; what never reaches it (a request that does
    not translate) is answered through :func:`flowbus.answers.failure`.
    """

    async def api(request: web.Request) -> web.StreamResponse:
        headers = request.headers
        accept = headers.get(hdrs.ACCEPT, "")
        peer = request.remote or ""
        call: Request | None = None
        # a plain GET of an object (the commonest request) is read without the rest of to_call
        plain = plain_open(request.method, request.raw_path, headers, tables.apps)
        try:
            if plain is not None:
                call = Request(Method.OPEN, plain[0], plain[1], plain[2])
                credentials = Credentials(token=plain[2], peer=peer)
            else:
                call, credentials = await _read(request, tables, peer)
        except FlowBusError as exc:
            response = failure(exc, None, peer=peer)
        else:
            if wants_events(call):
                return await stream_events(request, dispatcher, call, credentials)
            # the pipeline's one fast path (an OPEN the cache answers), else the pipeline
            answered = dispatcher.answer_now(call, credentials)
            response = answered if answered is not None else await dispatcher.handle(call, credentials)
        method = call.method if call is not None else None
        status, answer_headers, body = render(response, accept, method=method)
        if status == 405:
            answer_headers["Allow"] = _allow(dispatcher, call)
        return web.Response(status=status, headers=answer_headers, body=body)

    return api


async def _read(request: web.Request, tables: Tables, peer: str) -> tuple[Request, Credentials]:
    """The call an HTTP request (other than a plain GET) makes, and the caller's credentials."""
    headers = request.headers
    call, credentials = to_call(request.method, _tail(request), headers, _query(request), tables.apps, peer)
    if call.method in BODY_METHODS:
        call.data = read_data(call.method, await _body(request), headers.get(hdrs.CONTENT_TYPE, ""))
    return call, credentials


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_message_size
        raise TooLarge(f"The body is over the limit of {limit} bytes") from None


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
