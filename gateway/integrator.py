"""The integrator.io Flow API under ``/v1/flows``: each request is one call of ``flows/flow``.

| request | bus call | success |
|---|---|---|
| ``GET /v1/flows`` | LIST (every page) | 200, an array of flows |
| ``GET /v1/flows/{_id}`` | OPEN | 200, the flow |
| ``POST /v1/flows`` | CREATE | 201, the flow |
| ``PUT /v1/flows/{_id}`` | UPDATE | 200, the flow |
| ``DELETE /v1/flows/{_id}`` | DELETE | 204, no body |
| ``POST /v1/flows/{_id}/clone`` | RUN ``operation=clone`` (body: ``{"name"}``, optional) | 201, the clone |
| ``POST /v1/flows/{_id}/run`` | RUN (body: the input, optional) | 201, the run |

A flow is answered as integrator.io writes one: its fields as given, its id as ``_id``, and
``createdAt`` and ``lastModified``; the bus's bookkeeping (``id``, ``created``, ``updated``,
``version``, ``owner``, ``state``) is left out. ``_id`` in a body is the server's and is ignored.
A refusal answers the bus's HTTP status with ``{"errors": [{"code", "message", "field"?, "errorid"}]}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from flowbus.errors import FlowBusError, InvalidRequest
from flowbus.protocol import Method, Response
from gateway.surface import bus_call, every_item, json_body, json_response, operation, refused, retry_headers

__all__ = ["BASE", "PATHS", "ROUTES", "as_flow"]

BASE = "/v1/flows"
FLOWS = "flows/flow"
_KEPT_BY_THE_BUS = frozenset({"id", "created", "updated", "version", "owner", "state"})


def as_flow(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored flow as integrator.io answers one: ``_id`` first, its fields, its timestamps."""
    flow = {"_id": obj["id"], **{k: v for k, v in obj.items() if k not in _KEPT_BY_THE_BUS}}
    flow.setdefault("createdAt", obj.get("created"))  # a flow stored before the bus stamped these
    flow.setdefault("lastModified", obj.get("updated"))
    return flow


def _as_run(obj: dict[str, Any]) -> dict[str, Any]:
    """A started execution (its progress), with its id as ``_id``."""
    return {"_id": obj["id"], **{k: v for k, v in obj.items() if k != "id"}}


def _answer(response: Response, success: int, shape: Callable[[dict[str, Any]], Any] = as_flow) -> web.Response:
    error = response.error
    if error is not None:
        return _error(error)
    if success == 204:
        return web.Response(status=204)
    data = response.result()
    return json_response([shape(x) for x in data] if isinstance(data, list) else shape(data), success)


def _error(error: FlowBusError) -> web.Response:
    detail: dict[str, Any] = {"code": error.errorcode, "message": error.message}
    field = getattr(error, "field", None)
    if field:
        detail["field"] = field
    detail["errorid"] = error.errorid
    return json_response({"errors": [detail]}, error.http_status, retry_headers(error))


async def _flow_data(request: web.Request) -> dict[str, Any]:
    data = await json_body(request)
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a flow: a JSON object")
    return {k: v for k, v in data.items() if k != "_id"}


async def _optional_object(request: web.Request) -> dict[str, Any] | None:
    data = await json_body(request)
    if data is not None and not isinstance(data, dict):
        raise InvalidRequest("The body, when given, must be a JSON object")
    return data


async def list_flows(request: web.Request) -> web.Response:
    return _answer(await every_item(request, FLOWS), 200)


async def get_flow(request: web.Request) -> web.Response:
    return _answer(await bus_call(request, Method.OPEN, FLOWS, objectid=request.match_info["_id"]), 200)


async def create_flow(request: web.Request) -> web.Response:
    try:
        data = await _flow_data(request)
    except FlowBusError as exc:
        return _answer(refused(request, exc), 201)
    return _answer(await bus_call(request, Method.CREATE, FLOWS, data=data), 201)


async def update_flow(request: web.Request) -> web.Response:
    try:
        data = await _flow_data(request)
    except FlowBusError as exc:
        return _answer(refused(request, exc), 200)
    return _answer(await bus_call(request, Method.UPDATE, FLOWS, objectid=request.match_info["_id"], data=data), 200)


async def delete_flow(request: web.Request) -> web.Response:
    return _answer(await bus_call(request, Method.DELETE, FLOWS, objectid=request.match_info["_id"]), 204)


async def clone_flow(request: web.Request) -> web.Response:
    try:
        data = await _optional_object(request)
    except FlowBusError as exc:
        return _answer(refused(request, exc), 201)
    objectid, parameters = request.match_info["_id"], {"operation": "clone"}
    return _answer(await bus_call(request, Method.RUN, FLOWS, objectid=objectid, data=data, parameters=parameters), 201)


async def run_flow(request: web.Request) -> web.Response:
    try:
        data = await _optional_object(request)
    except FlowBusError as exc:
        return _answer(refused(request, exc), 201)
    return _answer(
        await bus_call(request, Method.RUN, FLOWS, objectid=request.match_info["_id"], data=data), 201, _as_run
    )


ROUTES = [
    web.get(BASE, list_flows, allow_head=False),
    web.post(BASE, create_flow),
    web.get(BASE + "/{_id}", get_flow, allow_head=False),
    web.put(BASE + "/{_id}", update_flow),
    web.delete(BASE + "/{_id}", delete_flow),
    web.post(BASE + "/{_id}/clone", clone_flow),
    web.post(BASE + "/{_id}/run", run_flow),
]


# -- OpenAPI ----------------------------------------------------------------------------------

_TAG = "integrator.io"
_FLOW = {
    "type": "object",
    "description": "An integrator.io flow: its fields as given (states, when it has them, run it here).",
    "properties": {
        "_id": {"type": "string"},
        "name": {"type": "string"},
        "disabled": {"type": "boolean"},
        "schedule": {"type": "string"},
        "timezone": {"type": "string"},
        "_exportId": {"type": "string"},
        "_importId": {"type": "string"},
        "_integrationId": {"type": "string"},
        "skipRetries": {"type": "boolean"},
        "pageGenerators": {"type": "array", "items": {"type": "object"}},
        "pageProcessors": {"type": "array", "items": {"type": "object"}},
        "createdAt": {"type": "string", "format": "date-time"},
        "lastModified": {"type": "string", "format": "date-time"},
    },
}
_ERRORS = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                    "errorid": {"type": "string"},
                },
            },
        }
    },
}
_ID = {
    "name": "_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The flow's id or name.",
}
_ASKING = {400: "Bad request", 401: "No or bad credentials", 403: "Not allowed"}
_OF_ONE = {**_ASKING, 404: "No such flow"}
_RUN = {"type": "object", "properties": {"_id": {"type": "string"}, "status": {"type": "string"}}}


def _op(name: str, summary: str, success: int, errors: dict[int, str], **kwargs: Any) -> dict[str, Any]:
    return operation(f"integrator_{name}", summary, success, tag=_TAG, errors=errors, error_schema=_ERRORS, **kwargs)


PATHS: dict[str, Any] = {
    BASE: {
        "get": _op("list_flows", "Get all flows", 200, _ASKING, answer={"type": "array", "items": _FLOW}),
        "post": _op(
            "create_flow",
            "Create a new flow",
            201,
            {**_ASKING, 409: "Name taken", 422: "Invalid"},
            body=_FLOW,
            answer=_FLOW,
        ),
    },
    BASE + "/{_id}": {
        "parameters": [_ID],
        "get": _op("get_flow", "Get a specific flow", 200, _OF_ONE, answer=_FLOW),
        "put": _op(
            "update_flow",
            "Update a specific flow",
            200,
            {**_OF_ONE, 409: "Conflict", 422: "Invalid"},
            body=_FLOW,
            answer=_FLOW,
        ),
        "delete": _op("delete_flow", "Delete a specific flow", 204, _OF_ONE),
    },
    BASE + "/{_id}/clone": {
        "parameters": [_ID],
        "post": _op(
            "clone_flow",
            "Clone a specific flow (as often as asked: '<name> (copy)', '<name> (copy 2)', ... or the name given)",
            201,
            {**_OF_ONE, 409: "Name taken"},
            answer=_FLOW,
        ),
    },
    BASE + "/{_id}/run": {
        "parameters": [_ID],
        "post": _op(
            "run_flow",
            "Run a specific flow on demand (a flow of exports and imports alone, with no states, answers 409)",
            201,
            {**_OF_ONE, 409: "Disabled, stopped, or nothing runnable", 422: "Invalid input"},
            answer=_RUN,
        ),
    },
}
