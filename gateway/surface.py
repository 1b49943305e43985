"""What the REST surfaces of other products share (:mod:`gateway.integrator`,
:mod:`gateway.flows_config`): each of their requests becomes bus calls through the one
dispatcher, as the caller, in the namespace of ``Flow-Request-Namespace``.

Here: the call (:func:`bus_call`), every page of a LIST (:func:`every_item`), a JSON body
(:func:`json_body`), the refusal of what never became a call (:func:`refused`), and the parts
of their OpenAPI descriptions (:func:`operation`). What an answer looks like is each surface's.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from flowbus.answers import failure
from flowbus.errors import FlowBusError, TooLarge
from flowbus.params import MAX_LIMIT
from flowbus.protocol import Method, Request, Response
from gateway.credentials import read_credentials
from gateway.keys import DISPATCHER, SETTINGS
from gateway.request import NAMESPACE, parse_json

__all__ = ["bus_call", "every_item", "json_body", "json_response", "operation", "refused", "retry_headers"]


async def bus_call(
    request: web.Request,
    method: Method,
    endpoint: str,
    *,
    objectid: str | None = None,
    data: dict[str, Any] | list[Any] | None = None,
    parameters: dict[str, Any] | None = None,
) -> Response:
    """One call through the dispatcher (the pipeline of every transport), as the caller the
    request's credentials name (a token, HTTP Basic or an API key), in its namespace."""
    peer = request.remote or ""
    try:
        credentials = read_credentials(request.headers, request.query, peer)
    except FlowBusError as exc:
        return failure(exc, peer=peer)
    namespace = request.headers.get(NAMESPACE[0]) or ""
    call = Request(method, endpoint, objectid, credentials.token, namespace, parameters or {}, data)
    return await request.app[DISPATCHER].handle(call, credentials)


async def every_item(request: web.Request, endpoint: str) -> Response:
    """A LIST of every object of ``endpoint``: its pages, the most a page holds each, in order.

    Answers the items as ``data``, or the first page's refusal."""
    items: list[Any] = []
    while True:
        response = await bus_call(request, Method.LIST, endpoint, parameters={"limit": MAX_LIMIT, "offset": len(items)})
        if response.error is not None:
            return response
        batch = response.result()
        items.extend(batch)
        if response.page is None or not batch or len(items) >= response.page.total:
            return Response(data=items)


async def json_body(request: web.Request) -> Any:
    """The request's JSON body (an object or an array), or None when it has none.

    Raises:
        InvalidRequest: not JSON, not an object or an array, or nested too deep.
        TooLarge: over the bus's message size.
    """
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"The body is over the limit of {request.app[SETTINGS].max_message_size} bytes") from None
    return parse_json(body) if body.strip() else None


def refused(request: web.Request, error: FlowBusError) -> Response:
    """The answer of a request refused before it became a call (logged once, with an errorid)."""
    return failure(error, peer=request.remote or "")


def retry_headers(error: FlowBusError) -> dict[str, str]:
    """``Retry-After`` where the refusal says when to try again."""
    return {} if error.retry_after is None else {"Retry-After": str(max(0, math.ceil(error.retry_after)))}


def json_response(value: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    """``value`` as a JSON answer."""
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json", headers=headers)


def operation(
    operation_id: str,
    summary: str,
    success: int,
    *,
    tag: str,
    body: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
    errors: dict[int, str] | None = None,
    error_schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An OpenAPI operation of a surface: its success (with ``answer``'s schema, or no body for
    a 204), the refusals it documents, and its JSON request ``body`` if it takes one."""
    responses: dict[str, Any] = {str(success): {"description": "Success"}}
    if answer is not None:
        responses[str(success)]["content"] = {"application/json": {"schema": answer}}
    for status, what in (errors or {}).items():
        responses[str(status)] = {
            "description": what,
            "content": {"application/json": {"schema": error_schema or {"type": "object"}}},
        }
    out: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "parameters": [{"$ref": "#/components/parameters/namespace"}],
        "responses": responses,
    }
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return out
