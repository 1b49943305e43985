"""Gateway middlewares: CORS for listed origins, and every failure outside the dispatcher still
answers an envelope."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from flowbus.errors import FlowBusError, InternalError, InvalidRequest, MethodNotSupported, NoSuchEndpoint, TooLarge
from flowbus.protocol import new_errorid
from gateway.keys import DISPATCHER, SETTINGS
from gateway.translate import render

__all__ = ["CORS_HEADERS", "CORS_METHODS", "cors", "envelope_errors"]

logger = logging.getLogger("gateway")

CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = (
    "Authorization, Content-Type, Flow-Auth-Token, Flow-Request-ObjectId, Flow-Request-Namespace, "
    "Flow-Request-Method, X-API-Key"
)
_CORS_MAX_AGE = "600"

# aiohttp's own refusals, as the bus error a client branches on.
_HTTP_ERRORS: dict[int, type[FlowBusError]] = {
    404: NoSuchEndpoint,
    405: MethodNotSupported,
}


@web.middleware
async def envelope_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer aiohttp's HTTP errors (404, 405, 413 …) and any unexpected exception as envelopes.

    A body over ``max_message_size`` answers TOO_LARGE. An unexpected exception is logged
    with a fresh errorid and answered INTERNAL_ERROR; the traceback stays in the log.
    """
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_message_size
        return _answer(request, TooLarge(f"The body is over the limit of {limit} bytes"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _answer(request, _http_error(exc))
    except Exception:
        errorid = new_errorid()
        logger.error("internal error errorid=%s %s %s", errorid, request.method, request.path, exc_info=True)
        return _answer(request, InternalError(errorid=errorid))


def _http_error(exc: web.HTTPException) -> FlowBusError:
    cls = _HTTP_ERRORS.get(exc.status)
    if cls is not None:
        return cls()
    if exc.status >= 500:
        return InternalError()
    return InvalidRequest(exc.reason or None)


def _answer(request: web.Request, error: FlowBusError) -> web.Response:
    response = request.app[DISPATCHER].fail(error, None, peer=request.remote or "")
    status, headers, body = render(response, request.headers.get("Accept", ""))
    return web.Response(status=status, headers=headers, body=body)


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS for the origins in ``Settings.cors_origins`` (``*``: any); off when that is empty
    (:func:`gateway.app.create_app` then leaves this middleware out).

    A request whose ``Origin`` is listed gets ``Access-Control-Allow-Origin: <origin>`` (also
    on error envelopes, so scripts can read them); an ``OPTIONS`` preflight of an ``/api/`` path
    from a listed origin answers 204 with the methods and headers the gateway reads. Credentials
    (cookies, a browser's remembered HTTP Basic) are never allowed: callers send a token. An
    unlisted origin gets no CORS header, and its preflight is refused as before (405).
    """
    allowed = request.app[SETTINGS].cors_origins
    if not allowed:
        return await handler(request)
    origin = request.headers.get("Origin", "")
    listed = bool(origin) and ("*" in allowed or origin in allowed)
    if (
        listed
        and request.method == "OPTIONS"
        and request.path.startswith("/api/")
        and "Access-Control-Request-Method" in request.headers
    ):
        response: web.StreamResponse = web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": _CORS_MAX_AGE,
            },
        )
    else:
        response = await handler(request)
    if listed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    # The answer depends on Origin whenever CORS is on: caches must keep one per origin.
    vary = response.headers.get("Vary")
    if not vary:
        response.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin"
    return response
