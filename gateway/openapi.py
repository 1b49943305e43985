"""The OpenAPI 3.1 document of the HTTP mirror, generated from the registry.

Each endpoint gets two paths: ``/api/<app>/<endpoint>/`` (LIST by GET, CREATE by POST) and
``/api/<app>/<endpoint>/{objectid}`` (OPEN by GET, UPDATE by POST/PUT/PATCH, DELETE by DELETE;
RUN by POST and INDEX by GET with ``Flow-Request-Method``). An operation appears only when
the endpoint supports a method its verb can carry there. The REST surfaces of other products
(:mod:`gateway.integrator`, :mod:`gateway.flows_config`) add their own paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flowbus import __version__
from flowbus.errors import error_class
from flowbus.protocol import NEEDS_DATA, Method
from flowbus.registry import Entry, Registry
from gateway import flows_config, flux, integrator, smart_flows

__all__ = ["build_openapi"]

_ERRORCODES = [
    "INVALID_REQUEST",
    "MISSING_OBJECTID",
    "INVALID_DATA",
    "NO_SUCH_ENDPOINT",
    "METHOD_NOT_SUPPORTED",
    "DO_NOT_EXIST",
    "CONFLICT",
    "AUTH_REQUIRED",
    "AUTH_FAILED",
    "PERMISSION_DENIED",
    "TOO_LARGE",
    "RATE_LIMITED",
    "TIMEOUT",
    "UNAVAILABLE",
    "INTERNAL_ERROR",
]
_SECURITY: list[dict[str, list[str]]] = [
    {"basic": []},
    {"bearer": []},
    {"flowToken": []},
    {"tokenQuery": []},
    {"apiKey": []},
]
_SLUG = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class _Operation:
    """One (path, verb) pair: the method it means without the header, and what the header may say."""

    verb: str
    default: Method
    carries: tuple[Method, ...]


# The operations of the collection path (no object id) and of the object path.
_COLLECTION_OPS = (
    _Operation("get", Method.LIST, (Method.LIST, Method.INDEX)),
    _Operation("post", Method.CREATE, (Method.CREATE,)),
)
_OBJECT_OPS = (
    _Operation("get", Method.OPEN, (Method.OPEN, Method.INDEX)),
    _Operation("post", Method.UPDATE, (Method.UPDATE, Method.RUN)),
    _Operation("put", Method.UPDATE, (Method.UPDATE,)),
    _Operation("patch", Method.UPDATE, (Method.UPDATE,)),
    _Operation("delete", Method.DELETE, (Method.DELETE,)),
)


def build_openapi(registry: Registry) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of every endpoint and method in ``registry``."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = dict(_ENVELOPE_SCHEMAS)
    ids: set[str] = set()
    for entry in registry.entries():
        slug = _unique(_SLUG.sub("_", entry.endpoint.name), set(schemas))
        schemas[slug], schemas[f"{slug}_changes"] = _data_schemas(entry)
        base = f"/api/{entry.app}/{entry.endpoint.name}/"
        collection = _path_item(entry, _COLLECTION_OPS, slug, ids)
        item = _path_item(entry, _OBJECT_OPS, slug, ids)
        if collection:
            paths[base] = collection
        if item:
            paths[base + "{objectid}"] = {"parameters": [{"$ref": "#/components/parameters/objectid"}], **item}
    paths.update(integrator.PATHS)  # the surfaces of other products, over the same calls
    paths.update(flows_config.PATHS)
    if registry.get("flows/flow") is not None and registry.get("flows/execution") is not None:
        paths.update(smart_flows.OPENAPI_PATHS)  # the Smart Flows API, served over those endpoints
        schemas.update(smart_flows.OPENAPI_SCHEMAS)
    paths.update(flux.openapi_paths())  # the Flux REST API (docs/FLOWS.md)
    schemas.update(flux.OPENAPI_SCHEMAS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FlowBus HTTP API",
            "version": __version__,
            "description": "Every bus endpoint mirrored as /api/<application>/<endpoint>/<objectid>. "
            "Answers are the bus's JSON envelopes (XML with Accept: application/xml).",
        },
        "tags": [{"name": name, "description": app.description} for name, app in sorted(registry.apps.items())]
        + [{"name": "flux", "description": "The Flux REST API: flows executed and followed by context id"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": _PARAMETERS,
            "securitySchemes": _SECURITY_SCHEMES,
        },
        "security": _SECURITY,
    }


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _data_schemas(entry: Entry) -> tuple[dict[str, Any], dict[str, Any]]:
    """The endpoint's data schema, and the same without ``required`` (an UPDATE's partial changes)."""
    schema = dict(entry.endpoint.schema or {"type": "object"})
    changes = {key: value for key, value in schema.items() if key != "required"}
    return schema, changes


def _path_item(entry: Entry, operations: tuple[_Operation, ...], slug: str, ids: set[str]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for op in operations:
        methods = [m for m in op.carries if m in entry.endpoint.methods]
        if methods:
            item[op.verb] = _operation(entry, op, methods, slug, ids)
    return item


def _operation(entry: Entry, op: _Operation, methods: list[Method], slug: str, ids: set[str]) -> dict[str, Any]:
    name = entry.endpoint.name
    primary = op.default if op.default in methods else methods[0]
    suffix = f"_{op.verb}" if op.verb in ("put", "patch") else ""
    operation: dict[str, Any] = {
        "operationId": _unique(f"{primary.lower()}_{slug}{suffix}", ids),
        "tags": [entry.app],
        "summary": f"{' or '.join(methods)} {name}",
        "description": entry.endpoint.description or name,
        "parameters": _parameters(op, methods),
        "responses": _responses(201 if primary is Method.CREATE else 200),
    }
    body = _request_body(methods, slug)
    if body is not None:
        operation["requestBody"] = body
    if all(m in entry.public for m in methods):
        operation["security"] = []
    return operation


def _parameters(op: _Operation, methods: list[Method]) -> list[dict[str, Any]]:
    method_header = {
        "name": "Flow-Request-Method",
        "in": "header",
        "required": op.default not in methods,
        "description": f"The bus method; without it {op.verb.upper()} means {op.default}.",
        "schema": {"type": "string", "enum": [str(m) for m in methods]},
    }
    out: list[dict[str, Any]] = [method_header, {"$ref": "#/components/parameters/namespace"}]
    if Method.LIST in methods or (Method.INDEX in methods and op.default is Method.LIST):
        out += [{"$ref": f"#/components/parameters/{name}"} for name in ("limit", "page", "offset", "sort", "q")]
    return out


def _request_body(methods: list[Method], slug: str) -> dict[str, Any] | None:
    if not any(m in NEEDS_DATA or m is Method.RUN for m in methods):
        return None
    ref = slug if Method.CREATE in methods else f"{slug}_changes"
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {
        "required": all(m in NEEDS_DATA for m in methods),
        "content": {"application/json": {"schema": schema}, "application/xml": {"schema": schema}},
    }


def _responses(success: int) -> dict[str, Any]:
    envelope = {"$ref": "#/components/schemas/Envelope"}
    error = {"$ref": "#/components/schemas/ErrorEnvelope"}
    out: dict[str, Any] = {
        str(success): {"description": "Success", "content": _content(envelope)},
    }
    for status in (400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 503, 504):
        codes = [code for code in _ERRORCODES if error_class(code).http_status == status]
        out[str(status)] = {"description": ", ".join(codes), "content": _content(error)}
    return out


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}, "application/xml": {"schema": schema}}


_ENVELOPE_SCHEMAS: dict[str, Any] = {
    "Envelope": {
        "type": "object",
        "description": "A successful answer. LIST and INDEX searches answer an array and page.",
        "required": ["status", "success", "data", "dataType"],
        "properties": {
            "status": {"type": "integer", "enum": [0]},
            "success": {"const": True},
            "data": {},
            "dataType": {"type": "string", "enum": ["JSON"]},
            "page": {
                "type": "object",
                "required": ["limit", "offset", "total"],
                "properties": {
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "total": {"type": "integer"},
                },
            },
            "requestid": {"type": ["string", "integer"]},
        },
    },
    "ErrorEnvelope": {
        "type": "object",
        "description": "A failed call. The server logs the details under errorid.",
        "required": ["status", "success", "message", "errorcode", "dataType", "errorid"],
        "properties": {
            "status": {"type": "integer", "enum": [0]},
            "success": {"const": False},
            "message": {"type": "string"},
            "errorcode": {"type": "string", "enum": _ERRORCODES},
            "dataType": {"type": "string", "enum": ["JSON"]},
            "errorid": {"type": "string", "format": "uuid"},
            "retryAfter": {"type": "number"},
            "requestid": {"type": ["string", "integer"]},
        },
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_PARAMETERS: dict[str, Any] = {
    "objectid": {"name": "objectid", "in": "path", "required": True, "schema": {"type": "string"}},
    "namespace": {
        "name": "Flow-Request-Namespace",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Partition of objects (tenant, site); empty is the default namespace. "
        "Query-string twin: namespace.",
    },
    "flowObjectId": {
        "name": "Flow-Request-ObjectId",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "The object id, when not the last path segment (the whole path then names the endpoint). "
        "Query-string twin: objectid.",
    },
    "limit": _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 30}, "Page size."),
    "page": _query("page", {"type": "integer", "minimum": 0}, "0-based page number (with limit)."),
    "offset": _query("offset", {"type": "integer", "minimum": 0}, "Objects to skip (instead of page)."),
    "sort": _query("sort", {"type": "string"}, "Field to sort by; prefix '-' for descending."),
    "q": _query("q", {"type": "string"}, "Full-text search terms (INDEX). Other keys filter on exact values."),
}

_SECURITY_SCHEMES: dict[str, Any] = {
    "basic": {"type": "http", "scheme": "basic"},
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "flowToken": {"type": "apiKey", "in": "header", "name": "Flow-Auth-Token"},
    "tokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
