"""The flows configuration API under ``/flows``: configurations are the flows of ``flows/flow``.

| request | bus call | success |
|---|---|---|
| ``GET /flows`` | LIST ``flows/flow`` (every page) | 200, an array of configurations |
| ``GET /flows/<flow_id>`` | OPEN ``flows/flow/<flow_id>`` | 200, the configuration (404 if none) |
| ``POST /flows`` (an array) | CREATE ``flows/flow``, ``data`` the array (all or none) | 201, the array created |
| ``PUT /flows/<flow_id>`` | UPDATE ``flows/flow/<flow_id>`` | 200, the configuration |
| ``DELETE /flows/<flow_id>`` | DELETE ``flows/flow/<flow_id>`` | 200, the configuration as it was |
| ``GET /flows/status`` | LIST ``flows/status`` (every page) | 200, each flow's status by ``flow_id`` |
| ``GET /flows/status/<flow_id>`` | OPEN ``flows/status/<flow_id>`` | 200, its status (404 if none) |
| ``PATCH /flows/commands`` | RUN ``flows/command/<command>`` | 200, ``{"status", "details"}`` |

A command's body is ``{command, flow_ids, type}``; ``flow_ids`` and ``type`` are the RUN's
``data``. A configuration is a flow as the bus stores it: its ``id`` is the ``flow_id`` of the
status and command answers (``flow_id`` is also taken for ``id`` in a new configuration);
``<flow_id>`` may also be the flow's name. A refusal answers
``{"error": <message>, "errorcode", "field"?, "errorid"}`` with the status the document gives:
400 for input the bus refuses (not JSON, not an array, an invalid or clashing configuration,
an unknown command), and for an unknown ``flow_id`` where the request writes (PUT, DELETE,
commands); 404 for an unknown ``flow_id`` where it reads; the bus's own status for the rest
(401, 403, 429, 503...).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flowbus.errors import FlowBusError, InvalidRequest
from flowbus.protocol import Method, Response
from gateway.surface import bus_call, every_item, json_body, json_response, operation, refused, retry_headers

__all__ = ["PATHS", "ROUTES"]

FLOWS = "flows/flow"
STATUS = "flows/status"
_REFUSED_INPUT = frozenset({"INVALID_REQUEST", "INVALID_DATA", "CONFLICT", "MISSING_OBJECTID"})


def _answer(response: Response, success: int, *, writes: bool = False) -> web.Response:
    """The answer's data with ``success``, or its refusal (an unknown id is 400 where ``writes``)."""
    error = response.error
    if error is None:
        return json_response(response.result(), success)
    if error.errorcode in _REFUSED_INPUT or (writes and error.errorcode == "DO_NOT_EXIST"):
        status = 400
    else:
        status = error.http_status
    body: dict[str, Any] = {"error": error.message, "errorcode": error.errorcode}
    field = getattr(error, "field", None)
    if field:
        body["field"] = field
    body["errorid"] = error.errorid
    return json_response(body, status, retry_headers(error))


def _flow_id(request: web.Request) -> str:
    return request.match_info["flow_id"]


async def list_configurations(request: web.Request) -> web.Response:
    return _answer(await every_item(request, FLOWS), 200)


async def get_configuration(request: web.Request) -> web.Response:
    return _answer(await bus_call(request, Method.OPEN, FLOWS, objectid=_flow_id(request)), 200)


async def add_configurations(request: web.Request) -> web.Response:
    try:
        data = await json_body(request)
        if not isinstance(data, list):
            raise InvalidRequest("The body must be a JSON array of configurations")
    except FlowBusError as exc:
        return _answer(refused(request, exc), 201)
    return _answer(await bus_call(request, Method.CREATE, FLOWS, data=data), 201)


async def update_configuration(request: web.Request) -> web.Response:
    try:
        data = await json_body(request)
        if not isinstance(data, dict):
            raise InvalidRequest("The body must be a configuration: a JSON object")
    except FlowBusError as exc:
        return _answer(refused(request, exc), 200)
    response = await bus_call(request, Method.UPDATE, FLOWS, objectid=_flow_id(request), data=data)
    return _answer(response, 200, writes=True)


async def delete_configuration(request: web.Request) -> web.Response:
    response = await bus_call(request, Method.DELETE, FLOWS, objectid=_flow_id(request))
    return _answer(response, 200, writes=True)


async def all_statuses(request: web.Request) -> web.Response:
    response = await every_item(request, STATUS)
    if response.error is None:
        response = Response(data={status["flow_id"]: status for status in response.result()})
    return _answer(response, 200)


async def one_status(request: web.Request) -> web.Response:
    return _answer(await bus_call(request, Method.OPEN, STATUS, objectid=_flow_id(request)), 200)


async def command_flows(request: web.Request) -> web.Response:
    try:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise InvalidRequest('The body must be a JSON object: {"command", "flow_ids", "type"}')
        command = body.get("command")
        if not isinstance(command, str) or not command:
            raise InvalidRequest("'command' is required: start, stop, pause or resume")
    except FlowBusError as exc:
        return _answer(refused(request, exc), 200)
    data = {key: body[key] for key in ("flow_ids", "type") if key in body}
    response = await bus_call(request, Method.RUN, "flows/command", objectid=command, data=data)
    return _answer(response, 200, writes=True)


# /flows/status and /flows/commands before /flows/<flow_id>, which would take them for ids.
ROUTES = [
    web.get("/flows", list_configurations, allow_head=False),
    web.post("/flows", add_configurations),
    web.get("/flows/status", all_statuses, allow_head=False),
    web.get("/flows/status/{flow_id}", one_status, allow_head=False),
    web.patch("/flows/commands", command_flows),
    web.get("/flows/{flow_id}", get_configuration, allow_head=False),
    web.put("/flows/{flow_id}", update_configuration),
    web.delete("/flows/{flow_id}", delete_configuration),
]


# -- OpenAPI ----------------------------------------------------------------------------------

_TAG = "flows configuration"
_CONFIGURATION = {
    "type": "object",
    "description": "A flow definition (docs/FLOWS.md); its id is the flow_id of status and commands.",
    "properties": {"id": {"type": "string"}, "flow_id": {"type": "string"}, "name": {"type": "string"}},
}
_ERROR = {
    "type": "object",
    "required": ["error", "errorcode", "errorid"],
    "properties": {
        "error": {"type": "string"},
        "errorcode": {"type": "string"},
        "field": {"type": "string"},
        "errorid": {"type": "string"},
    },
}
_STATUS = {
    "type": "object",
    "properties": {
        "flow_id": {"type": "string"},
        "name": {"type": "string"},
        "state": {"type": "string", "enum": ["running", "paused", "stopped", "disabled"]},
        "executions": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
_COMMAND = {
    "type": "object",
    "required": ["command"],
    "properties": {
        "command": {"type": "string", "enum": ["start", "stop", "pause", "resume"]},
        "flow_ids": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "integer", "enum": [0, 1]},
    },
}
_COMMANDED = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "details": {
            "type": "array",
            "items": {"type": "object", "properties": {"flow_id": {"type": "string"}, "status": {"type": "string"}}},
        },
    },
}
_FLOW_ID = {
    "name": "flow_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The configuration's id (or its flow's name).",
}
_ASKING = {401: "No or bad credentials", 403: "Not allowed"}


def _op(name: str, summary: str, success: int, errors: dict[int, str], **kwargs: Any) -> dict[str, Any]:
    errors = {**errors, **_ASKING}
    return operation(f"flows_config_{name}", summary, success, tag=_TAG, errors=errors, error_schema=_ERROR, **kwargs)


PATHS: dict[str, Any] = {
    "/flows": {
        "get": _op("list", "Get all configurations", 200, {}, answer={"type": "array", "items": _CONFIGURATION}),
        "post": _op(
            "add",
            "Add new configurations (all or none)",
            201,
            {400: "Not an array, or an invalid configuration"},
            body={"type": "array", "items": _CONFIGURATION},
            answer={"type": "array", "items": _CONFIGURATION},
        ),
    },
    "/flows/{flow_id}": {
        "parameters": [_FLOW_ID],
        "get": _op("get", "Get a configuration by flow_id", 200, {404: "No such flow_id"}, answer=_CONFIGURATION),
        "put": _op(
            "update",
            "Update a configuration",
            200,
            {400: "Invalid input, or no such flow_id"},
            body=_CONFIGURATION,
            answer=_CONFIGURATION,
        ),
        "delete": _op("delete", "Delete a configuration", 200, {400: "No such flow_id"}, answer=_CONFIGURATION),
    },
    "/flows/status": {
        "get": _op(
            "status",
            "The status of every flow, by flow_id",
            200,
            {},
            answer={"type": "object", "additionalProperties": _STATUS},
        ),
    },
    "/flows/status/{flow_id}": {
        "parameters": [_FLOW_ID],
        "get": _op("flow_status", "The status of one flow", 200, {404: "No such flow_id"}, answer=_STATUS),
    },
    "/flows/commands": {
        "patch": _op(
            "command",
            "Start, stop, pause or resume flows (all of them without flow_ids)",
            200,
            {400: "Invalid input, an unknown command or flow_id"},
            body=_COMMAND,
            answer=_COMMANDED,
        ),
    },
}
