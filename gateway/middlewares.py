"""The gateway's middleware: its error boundary (every failure outside a call still answers
an envelope), the guard of a bus without authentication, and CORS for listed origins."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from multidict import istr

from flowbus.answers import failure, internal_failure
from flowbus.config import Settings
from flowbus.errors import (
    FlowBusError,
    InternalError,
    InvalidRequest,
    MethodNotSupported,
    NoSuchEndpoint,
    PermissionDenied,
    TooLarge,
)
from flowbus.handshake import origin_allowed
from flowbus.hosts import REFUSED as HOST_REFUSED, HostCheck
from gateway.keys import SETTINGS
from gateway.rendering import render

__all__ = [
    "CORS_HEADERS",
    "CORS_METHODS",
    "ClientMistakes",
    "cors",
    "failures",
    "no_auth_guard",
    "quiet_client_mistakes",
]

logger = logging.getLogger("gateway")

CROSS_SITE_REFUSED = (
    "Cross-site request refused: a bus without authentication answers only its own pages, listed origins"
    " and clients that are not browsers"
)
_SEC_FETCH_SITE = istr("Sec-Fetch-Site")

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
async def failures(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The gateway's error boundary, outermost: whatever a handler or the router lets out is
    answered as an envelope.

    - the router's refusals: 404 NO_SUCH_ENDPOINT, or 405 METHOD_NOT_SUPPORTED (with ``Allow``)
      when a route serves the path for other methods;
    - aiohttp's other HTTP errors as the bus error they mean (a body over ``max_message_size``
      is TOO_LARGE); an HTTP redirect (status below 400) goes on to aiohttp;
    - anything else is logged with a fresh errorid and answered INTERNAL_ERROR; the traceback
      stays in the log.

    Calls themselves never get here: the pipeline answers their failures
    (:meth:`flowbus.dispatcher.Dispatcher.handle`).
    """
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        return _answer(request, MethodNotSupported(), {"Allow": ", ".join(sorted(exc.allowed_methods))})
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_message_size
        return _answer(request, TooLarge(f"The body is over the limit of {limit} bytes"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _answer(request, _http_error(exc))
    except Exception:
        response = internal_failure(f"{request.method} {request.path}")
        status, headers, body = render(response, request.headers.get("Accept", ""))
        return web.Response(status=status, headers=headers, body=body)


class ClientMistakes(logging.Filter):
    """Turns aiohttp's log of a request it could not parse (a request line over 8,190 bytes, a NUL
    in a header: the client's mistake, answered 400 by aiohttp itself) into one WARNING line
    without a traceback. Installed on the ``aiohttp.server`` logger (:func:`quiet_client_mistakes`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or exc.code >= 500:
            return True
        if not logger.isEnabledFor(logging.WARNING):
            return False
        reason = " ".join(str(exc.message).split())[:200]
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "refused a malformed HTTP request (%s): %s", (exc.code, reason)
        record.exc_info = record.exc_text = None
        return True


def quiet_client_mistakes() -> None:
    """Install :class:`ClientMistakes` once on the logger aiohttp reports parse failures with."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientMistakes) for f in server.filters):
        server.addFilter(ClientMistakes())


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


def no_auth_guard(settings: Settings) -> Middleware:
    """On a bus without authentication, refuse (403 PERMISSION_DENIED) what a web page could make
    a visitor's browser send it:

    - a ``Host`` that is not one of the bus's names: a page rebound to this machine (see
      :mod:`flowbus.hosts`);
    - a cross-site request: an ``Origin`` that is neither the bus's own nor listed in
      ``allowed_origins`` or ``cors_origins``, or, without ``Origin``, ``Sec-Fetch-Site:
      cross-site`` or ``same-site`` (another site's image, link or form).

    Clients that are not browsers send neither ``Origin`` nor ``Sec-Fetch-Site``.
    """
    hosts = HostCheck(settings.allowed_hosts, settings.host)
    listed = frozenset(settings.cors_origins)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if not hosts(host):
            return _answer(request, PermissionDenied(HOST_REFUSED))
        if _cross_site(request.headers, host, settings, listed):
            return _answer(request, PermissionDenied(CROSS_SITE_REFUSED))
        return await handler(request)

    return guard


def _cross_site(headers: Mapping[str, str], host: str | None, settings: Settings, listed: frozenset[str]) -> bool:
    origin = headers.get(hdrs.ORIGIN)
    if origin is not None:
        return not (origin in listed or "*" in listed or origin_allowed(origin, host, settings))
    return headers.get(_SEC_FETCH_SITE) in ("cross-site", "same-site")


def _http_error(exc: web.HTTPException) -> FlowBusError:
    cls = _HTTP_ERRORS.get(exc.status)
    if cls is not None:
        return cls()
    if exc.status >= 500:
        return InternalError()
    return InvalidRequest(exc.reason or None)


def _answer(request: web.Request, error: FlowBusError, extra: dict[str, str] | None = None) -> web.Response:
    response = failure(error, None, peer=request.remote or "")
    status, headers, body = render(response, request.headers.get("Accept", ""))
    return web.Response(status=status, headers={**headers, **(extra or {})}, body=body)
