"""Gateway middlewares: every failure outside the dispatcher still answers an envelope."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from flowbus.errors import FlowBusError, InternalError, InvalidRequest, MethodNotSupported, NoSuchEndpoint, TooLarge
from flowbus.protocol import new_errorid
from gateway.keys import DISPATCHER, SETTINGS
from gateway.translate import render

__all__ = ["envelope_errors"]

logger = logging.getLogger("gateway")

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
