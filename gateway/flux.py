"""The Flux REST API (``/flux-api/...``): each request translated into bus calls.

A thin adapter. Every operation becomes a call of the ``flows`` application's endpoints through
:meth:`flowbus.dispatcher.Dispatcher.handle`, with the caller's credentials (read as everywhere
in the gateway: :mod:`gateway.credentials`), so the same authentication, permissions and
namespaces decide; ``packageName`` is the call's namespace. What comes back is rewritten in the
Flux API's shapes (field names, messages); no flow logic lives here.

| request | call |
|---|---|
| ``POST /flux-api/execute?packageName&fluxName`` | ``RUN flows/flow/<fluxName>`` |
| ``DELETE /flux-api/terminate?contextId`` | ``DELETE flows/execution/<contextId>`` |
| ``POST /flux-api/event?contextId`` | ``RUN flows/event/<event>`` (``ids=contextId``) |
| ``GET /flux-api/contexts?...`` | ``LIST flows/execution`` |
| ``GET /flux-api/context?contextId`` | ``OPEN flows/execution/<contextId>`` |
| ``GET /flux-api/context/state?contextId&stateName`` | ``OPEN ...`` with ``state`` |
| ``POST``/``PUT``/``DELETE /flux-api/context/tag?contextId&tag`` | ``UPDATE ...`` ``addTags``/``removeTags`` |
| ``GET /flux-api/definition?fluxName|contextId`` | ``OPEN flows/flow/<fluxName>``; ``OPEN ...`` ``view=definition`` |

Answers are JSON, or XML when ``Accept`` prefers it. A failure answers the HTTP status of its
bus error with ``{"message", "errorcode", "errorid"}`` (and ``field`` or ``retryAfter`` when the
bus gives them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import hdrs, web
from multidict import MultiMapping

from flowbus.answers import failure
from flowbus.auth.base import Credentials
from flowbus.dispatcher import Dispatcher
from flowbus.errors import FlowBusError, InvalidRequest, MethodNotSupported, NoSuchEndpoint, TooLarge
from flowbus.protocol import Method, Request, Response
from gateway.credentials import read_credentials
from gateway.keys import SETTINGS
from gateway.rendering import JSON_CONTENT_TYPE, XML_CONTENT_TYPE, to_xml, wants_xml
from gateway.request import read_data

__all__ = [
    "OPENAPI_SCHEMAS",
    "PREFIX",
    "ROUTES",
    "Flux",
    "flux_context",
    "flux_definition",
    "flux_state",
    "openapi_paths",
]

PREFIX = "/flux-api/"
EXECUTIONS = "flows/execution"
_MAX_CONTEXT_ID = 2**63 - 1
_CONTEXT_ID = re.compile(r"[0-9]{1,19}")
_HIDDEN = ("id", "created", "updated", "version", "owner", "state")
"""What the bus keeps beside a flow's definition."""


@dataclass(slots=True)
class _Asked:
    """What one Flux request brings: its query and the caller's credentials."""

    request: web.Request
    query: MultiMapping[str]
    credentials: Credentials

    def one(self, name: str, *, required: bool = False) -> str | None:
        """A query parameter given once (the last value if repeated); empty counts as absent."""
        values = self.query.getall(name, [])
        value = values[-1] if values else None
        if not value and required:
            raise InvalidRequest(f"The query parameter '{name}' is required")
        return value or None

    def context_id(self) -> int:
        """The ``contextId`` query parameter: a long."""
        value = self.one("contextId", required=True)
        assert value is not None
        if not _CONTEXT_ID.fullmatch(value) or not 0 < int(value) <= _MAX_CONTEXT_ID:
            raise InvalidRequest("'contextId' must be a context id: a positive integer (a long)")
        return int(value)

    def tags(self) -> list[str]:
        """The ``tag`` query parameter: repeated, or comma-joined (or both)."""
        tags = [part.strip() for value in self.query.getall("tag", []) for part in value.split(",")]
        tags = list(dict.fromkeys(tag for tag in tags if tag))
        if not tags:
            raise InvalidRequest("The query parameter 'tag' is required: one tag or more")
        return tags

    @property
    def namespace(self) -> str:
        """``packageName``: the namespace (the default one when absent)."""
        return self.query.get("packageName", "")

    async def body(self) -> dict[str, Any]:
        """The JSON (or XML) body as an object; an empty body is an empty object."""
        try:
            raw = await self.request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.request.app[SETTINGS].max_message_size
            raise TooLarge(f"The body is over the limit of {limit} bytes") from None
        data = read_data(Method.RUN, raw, self.request.headers.get(hdrs.CONTENT_TYPE, ""))
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise InvalidRequest("The body must be a JSON object")
        return data


Operation = Callable[["Flux", _Asked], Awaitable[Any]]


class Flux:
    """The handlers of ``/flux-api/``: one bus call per operation (see the module's text)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The route of every ``/flux-api/`` path: the operation of its path and verb."""
        accept = request.headers.get(hdrs.ACCEPT, "")
        peer = request.remote or ""
        verbs = ROUTES.get(request.path)
        if verbs is None:
            return _failed(failure(NoSuchEndpoint(f"No Flux operation at {request.path[:128]}"), peer=peer), accept)
        operation = verbs.get(request.method)
        if operation is None:
            refused = MethodNotSupported(f"HTTP {request.method[:16]} is not served here: {', '.join(verbs)}")
            answer = _failed(failure(refused, peer=peer), accept)
            answer.headers["Allow"] = ", ".join(verbs)
            return answer
        try:
            credentials = read_credentials(request.headers, request.query, peer)
            result = await operation(self, _Asked(request, request.query, credentials))
        except FlowBusError as exc:
            # the pipeline's refusals are logged and numbered already; the adapter's own are here
            return _failed(failure(exc, peer=peer) if exc.errorid is None else Response(error=exc), accept)
        return _answer(200, result, accept)

    async def call(
        self,
        asked: _Asked,
        method: Method,
        endpoint: str,
        objectid: str | None = None,
        *,
        parameters: dict[str, Any] | None = None,
        data: Any = None,
    ) -> Any:
        """One bus call as the caller, in the namespace ``packageName`` names: its result, or
        its error raised."""
        token = asked.credentials.token
        request = Request(method, endpoint, objectid, token, asked.namespace, parameters or {}, data)
        response = await self.dispatcher.handle(request, asked.credentials)
        if response.error is not None:
            raise response.error
        return response.result()

    # -- the operations ----------------------------------------------------------------------

    async def execute(self, asked: _Asked) -> dict[str, Any]:
        flux = asked.one("fluxName", required=True)
        if "packageName" not in asked.query:
            raise InvalidRequest("The query parameter 'packageName' is required")
        body = await asked.body()
        parameters = {key: body[key] for key in ("startState", "tags") if body.get(key) is not None}
        started = await self.call(asked, Method.RUN, "flows/flow", flux, parameters=parameters, data=body.get("input"))
        return {"message": f"Flux {flux} is now executing", "contextId": started.get("contextId")}

    async def terminate(self, asked: _Asked) -> dict[str, Any]:
        await self.call(asked, Method.DELETE, EXECUTIONS, str(asked.context_id()))
        return {"message": "Flux terminated"}

    async def event(self, asked: _Asked) -> Any:
        parameters: dict[str, Any] = {"ids": "contextId"}
        if asked.one("contextId") is not None:
            parameters["contextId"] = str(asked.context_id())
        body = await asked.body()
        name = body.get("event")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("'event' is required: the name of the event")
        data = {key: body[key] for key in ("input", "tags") if body.get(key) is not None}
        return await self.call(asked, Method.RUN, "flows/event", name, parameters=parameters, data=data)

    async def contexts(self, asked: _Asked) -> list[dict[str, Any]]:
        parameters: dict[str, Any] = {}
        for name, key in _FILTERS.items():
            values = asked.query.getall(name, [])
            if values:
                parameters[key] = values[0] if len(values) == 1 else values
        listed = await self.call(asked, Method.LIST, EXECUTIONS, parameters=parameters)
        return [flux_context(context) for context in listed]

    async def context(self, asked: _Asked) -> dict[str, Any]:
        return flux_context(await self.call(asked, Method.OPEN, EXECUTIONS, str(asked.context_id())))

    async def state(self, asked: _Asked) -> dict[str, Any]:
        number = asked.context_id()
        name = asked.one("stateName", required=True)
        found = await self.call(asked, Method.OPEN, EXECUTIONS, str(number), parameters={"state": name})
        return flux_state(found)

    async def add_tags(self, asked: _Asked) -> dict[str, Any]:
        number, tags = asked.context_id(), asked.tags()
        await self.call(asked, Method.UPDATE, EXECUTIONS, str(number), data={"addTags": tags})
        return {"message": f"Tags [{', '.join(tags)}] successfully added to flux context with id '{number}'"}

    async def remove_tags(self, asked: _Asked) -> dict[str, Any]:
        number, tags = asked.context_id(), asked.tags()
        await self.call(asked, Method.UPDATE, EXECUTIONS, str(number), data={"removeTags": tags})
        return {"message": f"Tags [{', '.join(tags)}] successfully removed from flux context with id '{number}'"}

    async def definition(self, asked: _Asked) -> dict[str, Any]:
        if asked.one("contextId") is not None:  # it takes precedence over fluxName
            number = str(asked.context_id())
            found = await self.call(asked, Method.OPEN, EXECUTIONS, number, parameters={"view": "definition"})
        else:
            flux = asked.one("fluxName")
            if flux is None:
                raise InvalidRequest("Give 'fluxName' or 'contextId'")
            found = await self.call(asked, Method.OPEN, "flows/flow", flux)
        return flux_definition(found)


_FILTERS = {
    "fluxName": "flowName",
    "tag": "tag",
    "status": "status",
    "currentState": "currentState",
    "startState": "startState",
    "limit": "limit",
    "page": "page",
}
"""The filters of ``GET /flux-api/contexts``, and the parameters of ``LIST flows/execution``."""

ROUTES: Mapping[str, Mapping[str, Operation]] = {
    "/flux-api/execute": {"POST": Flux.execute},
    "/flux-api/terminate": {"DELETE": Flux.terminate},
    "/flux-api/event": {"POST": Flux.event},
    "/flux-api/contexts": {"GET": Flux.contexts},
    "/flux-api/context": {"GET": Flux.context},
    "/flux-api/context/state": {"GET": Flux.state},
    "/flux-api/context/tag": {"POST": Flux.add_tags, "PUT": Flux.add_tags, "DELETE": Flux.remove_tags},
    "/flux-api/definition": {"GET": Flux.definition},
}
"""Each path of the Flux REST API, and its operation by HTTP verb."""


# -- the Flux shapes ---------------------------------------------------------------------------


def flux_context(context: dict[str, Any]) -> dict[str, Any]:
    """An execution's context (``OPEN flows/execution``) as a Flux context; ``id`` is its
    context id (null for an execution stored before context ids), ``nextRun`` there only while
    a time is awaited."""
    out: dict[str, Any] = {
        "fluxName": context.get("flowName"),
        "id": context.get("contextId"),
        "currentState": context.get("currentState"),
        "startState": context.get("startState"),
        "waiting": bool(context.get("waiting")),
    }
    if context.get("nextRun") is not None:
        out["nextRun"] = context["nextRun"]
    out["status"] = context.get("status")
    out["input"] = context.get("input")
    out["output"] = context.get("output")
    out["tags"] = context.get("tags") or []
    out["stateContexts"] = [flux_state(state) for state in context.get("stateContexts") or []]
    out["executionHistory"] = [
        {"fluxName": entry.get("flowName"), "stateName": entry.get("stateName"), "stateIndex": entry.get("stateIndex")}
        for entry in context.get("executionHistory") or []
    ]
    return out


def flux_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state's context as Flux shows it: ``name``, ``input``, ``output``, ``transitionContexts``."""
    return {
        "name": state.get("name"),
        "input": state.get("input"),
        "output": state.get("output"),
        "transitionContexts": state.get("transitionContexts") or [],
    }


def flux_definition(flow: dict[str, Any]) -> dict[str, Any]:
    """A flow's definition as Flux shows it: ``comment`` (its description), ``triggers``, and
    ``states`` as an array of named states; then the rest of the definition."""
    rest = {key: value for key, value in flow.items() if key not in _HIDDEN}
    states = rest.pop("states", None) or {}
    out: dict[str, Any] = {
        "comment": rest.pop("description", ""),
        "triggers": rest.pop("triggers", None) or [],
        "states": [{"name": name, **spec} for name, spec in states.items()] if isinstance(states, dict) else states,
    }
    return out | rest


# -- answers -----------------------------------------------------------------------------------


def _answer(status: int, body: Any, accept: str, headers: dict[str, str] | None = None) -> web.Response:
    """``body`` as JSON, or as XML (root ``response``) when ``Accept`` prefers it."""
    headers = dict(headers or {})
    if accept and wants_xml(accept):
        headers["Content-Type"] = XML_CONTENT_TYPE
        return web.Response(status=status, body=to_xml(body), headers=headers)
    headers["Content-Type"] = JSON_CONTENT_TYPE
    return web.Response(status=status, body=orjson.dumps(body), headers=headers)


def _failed(response: Response, accept: str) -> web.Response:
    """A failure in the Flux API's shape: ``message`` first, and the bus's errorcode and errorid."""
    error = response.error
    assert error is not None
    body: dict[str, Any] = {"message": error.message, "errorcode": error.errorcode, "errorid": error.errorid}
    headers: dict[str, str] = {}
    field = getattr(error, "field", None)
    if field is not None:
        body["field"] = field
    if error.retry_after is not None:
        body["retryAfter"] = error.retry_after
        headers["Retry-After"] = str(max(0, math.ceil(error.retry_after)))
    return _answer(error.http_status, body, accept, headers)


# -- the OpenAPI description -------------------------------------------------------------------

_LONG = {"type": "integer", "format": "int64", "minimum": 1}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _parameter(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    out = {"name": name, "in": "query", "required": required, "schema": schema, "description": description}
    if schema.get("type") == "array":
        out |= {"style": "form", "explode": True}
    return out


_PACKAGE = _parameter(
    "packageName", {"type": "string"}, "The package: the namespace of the call (default: the default one)."
)
_CONTEXT = _parameter("contextId", _LONG, "The context id of the execution.", required=True)
_TAG = _parameter("tag", _STRINGS, "Tags, repeated or comma-joined.", required=True)
_FLUX_NAME = _parameter("fluxName", {"type": "string"}, "The name of the Flux service (the flow).")

_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/flux-api/execute", "post"): {
        "summary": "Execute a Flux service: RUN flows/flow/<fluxName>",
        "parameters": [{**_PACKAGE, "required": True}, {**_FLUX_NAME, "required": True}],
        "body": "FluxExecute",
        "answer": "FluxExecuted",
    },
    ("/flux-api/terminate", "delete"): {
        "summary": "Terminate a running Flux service: DELETE flows/execution/<contextId>",
        "parameters": [_CONTEXT, _PACKAGE],
        "answer": "FluxMessage",
    },
    ("/flux-api/event", "post"): {
        "summary": "Send an event to Flux services: RUN flows/event/<event>",
        "parameters": [{**_CONTEXT, "required": False}, _PACKAGE],
        "body": "FluxEvent",
        "answer": "FluxEventSent",
    },
    ("/flux-api/contexts", "get"): {
        "summary": "Get the contexts of Flux services: LIST flows/execution",
        "parameters": [
            _FLUX_NAME,
            {**_TAG, "required": False, "description": "Only contexts with all of these tags."},
            _parameter("status", {"type": "string"}, "Only contexts of this status (WAITING_UNTIL, ...)."),
            _parameter("currentState", {"type": "string"}, "Only contexts in this state."),
            _parameter("startState", {"type": "string"}, "Only contexts that started in this state."),
            _parameter("limit", {"type": "integer", "minimum": 1, "default": 30}, "Contexts per page."),
            _parameter("page", {"type": "integer", "minimum": 0, "default": 0}, "The page (0-based)."),
            _PACKAGE,
        ],
        "answer": "FluxContexts",
    },
    ("/flux-api/context", "get"): {
        "summary": "Get a Flux service's context: OPEN flows/execution/<contextId>",
        "parameters": [_CONTEXT, _PACKAGE],
        "answer": "FluxContext",
    },
    ("/flux-api/context/state", "get"): {
        "summary": "Get a Flux state's context: OPEN flows/execution/<contextId> with state",
        "parameters": [_CONTEXT, _parameter("stateName", {"type": "string"}, "The state.", required=True), _PACKAGE],
        "answer": "FluxStateContext",
    },
    ("/flux-api/context/tag", "post"): {
        "summary": "Add tags to a Flux service: UPDATE flows/execution/<contextId> addTags",
        "parameters": [_CONTEXT, _TAG, _PACKAGE],
        "answer": "FluxMessage",
    },
    ("/flux-api/context/tag", "put"): {
        "summary": "Add tags to a Flux service (as POST)",
        "parameters": [_CONTEXT, _TAG, _PACKAGE],
        "answer": "FluxMessage",
    },
    ("/flux-api/context/tag", "delete"): {
        "summary": "Remove tags from a Flux service: UPDATE flows/execution/<contextId> removeTags",
        "parameters": [_CONTEXT, _TAG, _PACKAGE],
        "answer": "FluxMessage",
    },
    ("/flux-api/definition", "get"): {
        "summary": "Get a Flux service's definition: OPEN flows/flow/<fluxName>, or the one an execution runs",
        "parameters": [
            _FLUX_NAME,
            {**_CONTEXT, "required": False, "description": "An execution's context id; wins over fluxName."},
            _PACKAGE,
        ],
        "answer": "FluxDefinition",
    },
}
_FAILURES = {
    "400": "INVALID_REQUEST: a missing or malformed parameter or body",
    "401": "AUTH_REQUIRED, AUTH_FAILED",
    "403": "PERMISSION_DENIED",
    "404": "DO_NOT_EXIST, NO_SUCH_ENDPOINT",
    "405": "METHOD_NOT_SUPPORTED",
    "409": "CONFLICT: the execution is not in a state that allows it",
    "413": "TOO_LARGE",
    "422": "INVALID_DATA: the input or start state does not fit the flow",
    "429": "RATE_LIMITED",
    "500": "INTERNAL_ERROR",
    "503": "UNAVAILABLE",
    "504": "TIMEOUT",
}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}, "application/xml": {"schema": schema}}


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI path items of ``/flux-api/`` (their schemas: :data:`OPENAPI_SCHEMAS`)."""
    paths: dict[str, Any] = {}
    for (path, verb), spec in _OPERATIONS.items():
        operation: dict[str, Any] = {
            "operationId": "flux_" + _SLUG.sub("_", path.removeprefix(PREFIX)) + f"_{verb}",
            "tags": ["flux"],
            "summary": spec["summary"],
            "parameters": spec["parameters"],
            "responses": {
                "200": {"description": "Success", "content": _content(_ref(spec["answer"]))},
                **{
                    code: {"description": what, "content": _content(_ref("FluxError"))}
                    for code, what in _FAILURES.items()
                },
            },
        }
        if "body" in spec:
            operation["requestBody"] = {
                "required": spec["body"] == "FluxEvent",
                "content": _content(_ref(spec["body"])),
            }
        paths.setdefault(path, {})[verb] = operation
    return paths


_SLUG = re.compile(r"[^A-Za-z0-9]+")
_STATE_CONTEXT = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "input": {},
        "output": {},
        "transitionContexts": {"type": "array", "items": {"type": "object"}},
    },
}
_TRANSITION = {"type": "object", "properties": {"contextId": _LONG, "state": {"type": "string"}}}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "FluxExecute": {
        "type": "object",
        "properties": {"startState": {"type": "string"}, "input": {}, "tags": _STRINGS},
    },
    "FluxEvent": {
        "type": "object",
        "required": ["event"],
        "properties": {"event": {"type": "string"}, "input": {}, "tags": _STRINGS},
    },
    "FluxMessage": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    "FluxExecuted": {
        "type": "object",
        "required": ["message", "contextId"],
        "properties": {"message": {"type": "string"}, "contextId": _LONG},
    },
    "FluxEventSent": {
        "type": "object",
        "required": ["message", "transitions", "executions"],
        "properties": {
            "message": {"type": "string"},
            "transitions": {"type": "array", "items": _TRANSITION},
            "executions": {"type": "array", "items": _TRANSITION},
        },
    },
    "FluxStateContext": _STATE_CONTEXT,
    "FluxContext": {
        "type": "object",
        "properties": {
            "fluxName": {"type": "string"},
            "id": {"type": ["integer", "null"], "format": "int64"},
            "currentState": {"type": "string"},
            "startState": {"type": "string"},
            "waiting": {"type": "boolean"},
            "nextRun": {
                "type": "integer",
                "description": "Milliseconds since the epoch; only while a time is awaited.",
            },
            "status": {"type": "string"},
            "input": {},
            "output": {},
            "tags": _STRINGS,
            "stateContexts": {"type": "array", "items": _STATE_CONTEXT},
            "executionHistory": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "fluxName": {"type": "string"},
                        "stateName": {"type": "string"},
                        "stateIndex": {"type": "integer"},
                    },
                },
            },
        },
    },
    "FluxContexts": {"type": "array", "items": _ref("FluxContext")},
    "FluxDefinition": {
        "type": "object",
        "properties": {
            "comment": {"type": "string"},
            "triggers": _STRINGS,
            "states": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
    },
    "FluxError": {
        "type": "object",
        "required": ["message", "errorcode", "errorid"],
        "properties": {
            "message": {"type": "string"},
            "errorcode": {"type": "string"},
            "errorid": {"type": "string", "format": "uuid"},
            "field": {"type": "string"},
            "retryAfter": {"type": "number"},
        },
    },
}
"""The schemas :func:`openapi_paths` refers to."""
