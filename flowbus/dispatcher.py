"""The dispatcher: every call, from any transport, goes through :meth:`Dispatcher.dispatch`.

Request → authenticate → look up → authorize → the OPEN fast path (an endpoint's cached stored
JSON) or the endpoint method → Response. This is also the
one error boundary: a FlowBusError becomes its error envelope, anything else is logged with a
fresh errorid and answered INTERNAL_ERROR; no traceback ever reaches the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from flowbus.auth.base import ANONYMOUS, NO_CREDENTIALS, Authenticator, Authorizer, Credentials, Identity
from flowbus.deadlines import Deadlines
from flowbus.endpoint import Call, Services
from flowbus.errors import (
    FlowBusError,
    InternalError,
    MethodNotSupported,
    NoSuchEndpoint,
    Timeout,
    Unavailable,
)
from flowbus.protocol import (
    Method,
    Page,
    Request,
    Response,
    encode_response,
    new_errorid,
    parse_request,
)
from flowbus.registry import Registry

__all__ = ["Dispatcher"]

logger = logging.getLogger("flowbus.dispatcher")

# Reading an enum member off its class runs a descriptor (about 60 ns); a module constant does not.
_OPEN, _RUN = Method.OPEN, Method.RUN


class Dispatcher:
    """Routes requests to endpoints.

    Args:
        registry: the frozen registry.
        services: what endpoints get in their Call.
        authenticator: turns credentials into an identity.
        authorizer: decides whether an identity may make a call.
        call_timeout: seconds an endpoint may take before the call answers TIMEOUT.
    """

    def __init__(
        self,
        registry: Registry,
        services: Services,
        authenticator: Authenticator,
        authorizer: Authorizer,
        *,
        call_timeout: float = 30.0,
    ) -> None:
        self.registry = registry
        self.services = services
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.call_timeout = call_timeout
        self.closing = False
        self.deadlines = Deadlines(call_timeout)
        self._known: Callable[[Credentials], Identity | None] = getattr(authenticator, "known", _unknown)

    async def dispatch(self, request: Request, credentials: Credentials) -> Response:
        """Answer one request within the call timeout; never raises (but for cancellation).

        The one error boundary of every transport: a FlowBusError becomes its envelope, anything
        else is logged under a fresh errorid and answered INTERNAL_ERROR. The caller's task is
        watched by :attr:`deadlines` while the call runs.
        """
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.watch(task)
        try:
            return await self._pipeline(request, credentials, task)
        except FlowBusError as exc:
            return self.fail(exc, request.requestid, peer=credentials.peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            return self._internal_error(request, "internal error")
        finally:
            self.deadlines.leave(task)

    async def handle_message(
        self,
        raw: str | bytes,
        *,
        default_endpoint: str | None = None,
        credentials: Credentials = NO_CREDENTIALS,
    ) -> bytes:
        """Parse one websocket message, :meth:`dispatch` it, and encode the answer.

        ``credentials`` are the connection's (its handshake's token and the peer's address); a
        message that carries a token of its own is answered with that token instead.
        """
        taken = self.parse(raw, default_endpoint, credentials)
        if isinstance(taken, Response):
            return self.encode(taken)
        return self.encode(await self.dispatch(*taken))

    def parse(
        self, raw: str | bytes, default_endpoint: str | None, credentials: Credentials
    ) -> Response | tuple[Request, Credentials]:
        """Read one message: the request and the credentials to dispatch it with, or the error
        answer of a message that does not parse."""
        try:
            request = parse_request(raw, default_endpoint=default_endpoint, default_token=credentials.token)
        except FlowBusError as exc:
            return self.fail(exc, exc.requestid, peer=credentials.peer)
        if request.token is not credentials.token:
            credentials = Credentials(token=request.token, peer=credentials.peer)
        return request, credentials

    def encode(self, response: Response) -> bytes:
        """The envelope of ``response`` as JSON bytes; an answer that is not JSON answers INTERNAL_ERROR."""
        try:
            return encode_response(response)
        except TypeError:  # orjson.JSONEncodeError: the endpoint answered something that is not JSON
            errorid = new_errorid()
            logger.error("answer is not JSON errorid=%s", errorid, exc_info=True)
            return encode_response(Response(error=InternalError(errorid=errorid), requestid=response.requestid))

    def _internal_error(self, request: Request, what: str) -> Response:
        """Log the exception being handled under a fresh errorid; answer INTERNAL_ERROR without details."""
        errorid = new_errorid()
        logger.error(
            "%s errorid=%s endpoint=%s method=%s",
            what,
            errorid,
            request.endpoint,
            request.method,
            exc_info=True,
        )
        return Response(error=InternalError(errorid=errorid), requestid=request.requestid)

    def fail(self, error: FlowBusError, requestid: str | int | None, *, peer: str = "") -> Response:
        """Give ``error`` an errorid, log it, and wrap it in a Response."""
        if error.errorid is None:
            error.errorid = new_errorid()
        level = logging.ERROR if error.http_status >= 500 else logging.INFO
        if logger.isEnabledFor(level):
            cause = error.__cause__ if level == logging.ERROR else None  # a store's failure, kept for the log
            logger.log(
                level,
                "call failed errorid=%s errorcode=%s peer=%s: %s",
                error.errorid,
                error.errorcode,
                peer,
                error.message,
                exc_info=(type(cause), cause, cause.__traceback__) if cause is not None else None,
            )
        return Response(error=error, requestid=requestid)

    async def _pipeline(self, request: Request, credentials: Credentials, task: asyncio.Task[Any]) -> Response:
        """Authenticate, look up, authorize, then the OPEN fast path or the endpoint's handler."""
        if self.closing:
            raise Unavailable("The bus is shutting down", retry_after=1)
        entry = self.registry.get(request.endpoint)
        method = request.method
        public = entry is not None and method in entry.public
        identity: Identity | None
        if public:
            identity = ANONYMOUS
        elif (identity := self._known(credentials)) is None:
            identity = await self.authenticator.authenticate(credentials)
        if entry is None:
            raise NoSuchEndpoint(f"No endpoint named {request.endpoint[:128]!r}")
        handler = entry.handlers.get(method)
        if handler is None:
            raise MethodNotSupported(f"{request.endpoint} does not support {method}")
        if not public:
            permissions = entry.endpoint.permissions  # named permissions of RUN operations, if any
            run = permissions and method is _RUN
            permission = permissions.get(request.objectid or "") if run else None
            self.authorizer.authorize(identity, method, request.endpoint, request.namespace, permission)
        if method is _OPEN and entry.peek is not None:
            assert request.objectid is not None  # parse_request refuses an OPEN without one
            stored = entry.peek(request.namespace, request.objectid)
            if stored is not None:
                return Response(stored=stored, requestid=request.requestid)
        call = Call(
            method,
            request.endpoint,
            request.objectid,
            request.namespace,
            request.parameters,
            request.data,
            identity,
            self.services,
            credentials.peer,
        )
        try:
            result = await handler(call)
        except asyncio.CancelledError:
            if self.deadlines.expired(task):
                raise Timeout() from None
            raise
        if isinstance(result, Page):
            return Response(page=result, requestid=request.requestid)
        return Response(data=result, requestid=request.requestid)


def _unknown(credentials: Credentials) -> Identity | None:
    """The fast path of an authenticator that has none: always authenticate."""
    return None
