"""The Smart Flows REST API (the smart-flows-api seed) over the bus: ``/api/v1/flows/executions``.

A thin adapter: each request becomes one bus call, made through
:meth:`Dispatcher.handle <flowbus.dispatcher.Dispatcher.handle>` like any other (the same
authentication, permissions and namespaces), and the call's answer is renamed into the
fields and statuses that API documents. The flows application does all the work; nothing
here knows more of it than its endpoints' names and the fields of their answers.

- ``POST /api/v1/flows/executions?flowId=<id>`` + body: ``RUN flows/flow/<id>``, the body as
  ``data`` (with ``dataType=XML`` for an XML body: the flow reads it by its input schema);
- ``GET /api/v1/flows/executions/<id>/progress``: ``OPEN flows/execution/<id>`` with ``view=progress``;
- ``GET /api/v1/flows/executions/<id>``: ``OPEN flows/execution/<id>``.

A success answers the documented object itself, as JSON (not the bus's envelope); a failure
answers the bus's error envelope with its HTTP status, as the rest of the gateway does.
Credentials (``X-API-Key``, or any the gateway reads) and the namespace
(``Flow-Request-Namespace`` or ``?namespace=``) are read as for ``/api/<app>/...``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import hdrs, web

from flowbus.answers import failure
from flowbus.errors import FlowBusError, InvalidRequest
from flowbus.protocol import Method, Request, Response
from gateway.credentials import read_credentials, twin
from gateway.keys import DISPATCHER
from gateway.rendering import JSON_CONTENT_TYPE, is_xml, render
from gateway.request import NAMESPACE, read_data

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "PATH", "STATUSES", "add_routes"]

PATH = "/api/v1/flows/executions"
STATUSES: Mapping[str, str] = {
    "RUNNING": "Running",
    "SUCCESS": "Success",
    "QUEUED": "Queued",
    "USER_INPUT": "User input",
    "ERROR": "Error",
    "CANCELED": "Canceled",
    "WAITING": "Waiting",
    "WAITING_UNTIL": "Waiting",
    "PAUSED": "Waiting",
    "SELECT_FLOW": "SelectFlow",
    "INTERRUPTED": "Interrupted",
}
"""The flows application's statuses as this API spells them. It has no word for waiting for a
time or for a resume: those wait for an external event to resume, which is its ``Waiting``."""

_FLOWS, _EXECUTIONS = "flows/flow", "flows/execution"
_TWINS = ("token", "namespace")  # the query keys every path takes: the credentials' and the namespace's
_FORM = ("schema", "model", "form")

Shape = Callable[[dict[str, Any]], dict[str, Any]]


def add_routes(router: web.UrlDispatcher) -> None:
    """Serve the API's three paths (before the ``/api/`` catch-all, which would read them as
    endpoints of an application ``v1``)."""
    router.add_route("*", PATH, _handler("POST", _start, _started))
    router.add_route("*", PATH + "/{id}/progress", _handler("GET", _progress, _progress_of))
    router.add_route("*", PATH + "/{id}", _handler("GET", _open, _execution_of))


# -- requests as calls --------------------------------------------------------------------


async def _start(request: web.Request) -> Request:
    """``POST ?flowId=``: RUN of the flow, its input the body (JSON, or XML read by its schema)."""
    _only(request.query, "flowId")
    flow = request.query.get("flowId", "")
    if not flow:
        raise InvalidRequest("'flowId' is required: the id of the flow to run (?flowId=<id>)")
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "")
    data = read_data(Method.RUN, await request.read(), content_type)
    parameters = {"dataType": "XML"} if is_xml(content_type) else {}
    return _call(request, Method.RUN, _FLOWS, flow, parameters, data)


async def _progress(request: web.Request) -> Request:
    _only(request.query)
    return _call(request, Method.OPEN, _EXECUTIONS, request.match_info["id"], {"view": "progress"})


async def _open(request: web.Request) -> Request:
    _only(request.query)
    return _call(request, Method.OPEN, _EXECUTIONS, request.match_info["id"], {})


def _only(query: Mapping[str, str], *taken: str) -> None:
    """Refuse a query string key the path does not take, by name (rather than ignore it)."""
    unknown = sorted({key[:64] for key in query if key not in taken and key not in _TWINS})
    if unknown:
        names = ", ".join(repr(key) for key in unknown[:8])
        raise InvalidRequest(f"{names}: not a parameter of this path (it takes {', '.join((*taken, *_TWINS))})")


def _call(
    request: web.Request,
    method: Method,
    endpoint: str,
    objectid: str,
    parameters: dict[str, Any],
    data: Any = None,
) -> Request:
    namespace = twin(request.headers, request.query, NAMESPACE) or ""
    call = Request(method, endpoint, objectid, None, namespace, parameters)
    call.data = data
    return call


# -- answers as this API's objects ----------------------------------------------------------


def _status(record: dict[str, Any]) -> Any:
    status = record.get("status")
    return STATUSES.get(status, status) if isinstance(status, str) else status


def _started(record: dict[str, Any]) -> dict[str, Any]:
    """The answer of a POST: ``id, percentage, message, status``."""
    return {
        "id": record.get("id"),
        "percentage": record.get("percentage", 0),
        "message": record.get("message", ""),
        "status": _status(record),
    }


def _progress_of(record: dict[str, Any]) -> dict[str, Any]:
    """The progress: as a POST's answer, and the form (``schema``, ``model``, ``form``) while
    the execution waits for a user's input."""
    progress = _started(record)
    if record.get("status") == "USER_INPUT":
        progress.update((key, record.get(key)) for key in _FORM)
    return progress


def _execution_of(record: dict[str, Any]) -> dict[str, Any]:
    """An execution: who made it and when, its status, its flow, and its ``state``."""
    flow = record.get("flow")
    if not isinstance(flow, dict):
        flow = {}
    return {
        "id": record.get("id"),
        "createdAt": record.get("created"),
        "createdBy": record.get("owner"),
        "modifiedAt": record.get("updated"),
        "modifiedBy": record.get("modifiedBy", record.get("owner")),
        "status": _status(record),
        "flow": {"id": flow.get("id"), "displayName": flow.get("name"), "type": "flow"},
        "state": {
            "inputData": record.get("input"),
            "output": record.get("output"),
            "stages": record.get("stages", []),
            "report": record.get("report", []),
        },
    }


# -- the handlers ---------------------------------------------------------------------------


def _handler(
    verb: str, read: Callable[[web.Request], Awaitable[Request]], shape: Shape
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        if request.method != verb:
            raise web.HTTPMethodNotAllowed(request.method, [verb])
        peer = request.remote or ""
        try:
            credentials = read_credentials(request.headers, request.query, peer)
            call = await read(request)
        except FlowBusError as exc:
            return _failed(failure(exc, None, peer=peer))
        call.token = credentials.token
        response = await request.app[DISPATCHER].handle(call, credentials)
        if response.error is not None:
            return _failed(response)
        answer = response.result()
        if not isinstance(answer, dict):  # never, for these calls: a bus that answers otherwise is broken
            raise TypeError(f"{call.method} {call.endpoint} answered {type(answer).__name__}")
        return web.Response(body=orjson.dumps(shape(answer)), content_type=JSON_CONTENT_TYPE)

    return handle


def _failed(response: Response) -> web.Response:
    """A failure as the gateway answers every failure: the error envelope, as JSON."""
    status, headers, body = render(response, "")
    return web.Response(status=status, headers=headers, body=body)


# -- the OpenAPI description ---------------------------------------------------------------

_ERROR = {"$ref": "#/components/schemas/ErrorEnvelope"}


def _errors(statuses: Iterable[int]) -> dict[str, Any]:
    return {
        str(status): {"description": "The bus's error envelope", "content": {"application/json": {"schema": _ERROR}}}
        for status in statuses
    }


def _answer(name: str, description: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


_EXECUTION_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The execution's id (the `id` a POST answered).",
}
_STATUS_SCHEMA = {"type": "string", "enum": sorted(set(STATUSES.values()))}
_STARTED_FIELDS = {
    "id": {"type": "string"},
    "percentage": {"type": "number", "minimum": 0, "maximum": 100},
    "message": {"type": "string"},
    "status": {"$ref": "#/components/schemas/SmartFlowsStatus"},
}
_TAG = ["smart-flows"]

OPENAPI_SCHEMAS: dict[str, Any] = {
    "SmartFlowsStatus": {
        **_STATUS_SCHEMA,
        "description": "Running, Success, Queued, User input, Error, Canceled, Waiting (for an event, a time or "
        "a resume), SelectFlow, Interrupted.",
    },
    "SmartFlowsStarted": {"type": "object", "required": list(_STARTED_FIELDS), "properties": _STARTED_FIELDS},
    "SmartFlowsProgress": {
        "type": "object",
        "required": list(_STARTED_FIELDS),
        "properties": {
            **_STARTED_FIELDS,
            "schema": {"type": "object", "description": "While User input: the JSON Schema of the answer."},
            "model": {"description": "While User input: the form's first values."},
            "form": {"type": "array", "description": "While User input: the form's layout."},
        },
    },
    "SmartFlowsExecution": {
        "type": "object",
        "required": ["id", "createdAt", "createdBy", "modifiedAt", "modifiedBy", "status", "flow", "state"],
        "properties": {
            "id": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "createdBy": {"type": "string"},
            "modifiedAt": {"type": "string", "format": "date-time"},
            "modifiedBy": {"type": "string"},
            "status": {"$ref": "#/components/schemas/SmartFlowsStatus"},
            "flow": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "displayName": {"type": "string"},
                    "type": {"type": "string", "enum": ["flow"]},
                },
            },
            "state": {
                "type": "object",
                "properties": {
                    "inputData": {"description": "The input the execution was started with."},
                    "output": {"description": "The flow's output, once it ended."},
                    "stages": {"type": "array", "items": {"type": "object"}, "description": "The stages it ran."},
                    "report": {"type": "array", "items": {"type": "object"}, "description": "Each step it ran."},
                },
            },
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    PATH: {
        "post": {
            "operationId": "smartFlowsCreateExecution",
            "tags": _TAG,
            "summary": "Start an execution of a flow (RUN flows/flow)",
            "description": "The body is the flow's input: XML (read by the flow's input schema) or JSON.",
            "parameters": [
                {
                    "name": "flowId",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The flow to run (its id, or its name).",
                },
                {"$ref": "#/components/parameters/namespace"},
            ],
            "requestBody": {
                "required": False,
                "content": {"application/xml": {"schema": {"type": "object"}}, "application/json": {"schema": {}}},
            },
            "responses": {
                **_answer("SmartFlowsStarted", "The execution, as it started"),
                **_errors((400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 504)),
            },
        }
    },
    PATH + "/{id}/progress": {
        "parameters": [_EXECUTION_ID],
        "get": {
            "operationId": "smartFlowsExecutionProgress",
            "tags": _TAG,
            "summary": "An execution's progress (OPEN flows/execution, view=progress)",
            "parameters": [{"$ref": "#/components/parameters/namespace"}],
            "responses": {
                **_answer("SmartFlowsProgress", "Its progress"),
                **_errors((400, 401, 403, 404, 429, 500, 503, 504)),
            },
        },
    },
    PATH + "/{id}": {
        "parameters": [_EXECUTION_ID],
        "get": {
            "operationId": "smartFlowsExecution",
            "tags": _TAG,
            "summary": "An execution, its input, output, stages and report (OPEN flows/execution)",
            "parameters": [{"$ref": "#/components/parameters/namespace"}],
            "responses": {
                **_answer("SmartFlowsExecution", "The execution"),
                **_errors((400, 401, 403, 404, 429, 500, 503, 504)),
            },
        },
    },
}
"""The paths above as OpenAPI 3.1 path items (with :data:`OPENAPI_SCHEMAS`), for
:func:`gateway.openapi.build_openapi`."""
