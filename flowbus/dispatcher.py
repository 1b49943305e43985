"""The dispatcher: every call, from any transport, goes through :meth:`Dispatcher.handle`.

Request → authenticate → look up → authorize → endpoint method → Response. This is also the
one error boundary: a FlowBusError becomes its error envelope, anything else is logged with a
fresh errorid and answered INTERNAL_ERROR; no traceback ever reaches the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from flowbus.auth.base import ANONYMOUS, NO_CREDENTIALS, Authenticator, Authorizer, Credentials, Identity
from flowbus.deadlines import Deadlines
from flowbus.eager import Paused, resume, start
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
    encode_result,
    encode_stored,
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

    async def handle(self, request: Request, credentials: Credentials) -> Response:
        """Answer one request within the call timeout; never raises (but for cancellation).

        The call runs inline; only if it has to wait is the caller's task watched by
        :attr:`deadlines` (a call that never waits cannot be cut short anyway).
        """
        paused = start(self._respond(request, credentials))
        if not isinstance(paused, Paused):
            return paused
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.watch(task)
        try:
            response: Response = await resume(paused)
            return response
        finally:
            self.deadlines.leave(task)

    async def handle_message(
        self,
        raw: str | bytes,
        *,
        default_endpoint: str | None = None,
        credentials: Credentials = NO_CREDENTIALS,
    ) -> bytes:
        """Parse one websocket message, answer it, and encode the answer.

        ``credentials`` are the connection's (its handshake's token and the peer's address); a
        message that carries a token of its own is answered with that token instead.

        The call timeout applies only if the caller's task is watched by :attr:`deadlines`
        (a :class:`~flowbus.session.Session` does that for each call that has to wait).
        """
        taken = self.take_message(raw, default_endpoint, credentials)
        if type(taken) is bytes:
            return taken
        request, credentials = taken  # type: ignore[misc]
        return await self.answer(request, credentials)

    def take_message(
        self, raw: str | bytes, default_endpoint: str | None, credentials: Credentials
    ) -> bytes | tuple[Request, Credentials]:
        """The first, synchronous half of :meth:`handle_message`: the encoded answer if it can be
        given at once (a message that does not parse, an OPEN of a cached object, a refusal of
        one), else the request and the credentials to :meth:`answer` it with."""
        try:
            request = parse_request(raw, default_endpoint=default_endpoint, default_token=credentials.token)
        except FlowBusError as exc:
            return encode_response(self.fail(exc, exc.requestid, peer=credentials.peer))
        if request.token is not credentials.token:
            credentials = Credentials(token=request.token, peer=credentials.peer)
        if request.method is _OPEN:
            try:
                objectid: str = request.objectid  # type: ignore[assignment]  # an OPEN always has one
                body = self.peek_open(request.endpoint, request.namespace, objectid, credentials)
            except FlowBusError as exc:
                return encode_response(self.fail(exc, request.requestid, peer=credentials.peer))
            except Exception:
                return encode_response(self._internal_error(request, "internal error"))
            if body is not None:
                return encode_stored(body, request.requestid)
        return request, credentials

    async def answer(self, request: Request, credentials: Credentials) -> bytes:
        """The second half of :meth:`handle_message`: call the endpoint, encode its answer."""
        try:
            result = await self._call(request, credentials)
        except FlowBusError as exc:
            return encode_response(self.fail(exc, request.requestid, peer=credentials.peer))
        except asyncio.CancelledError:
            raise
        except Exception:
            return encode_response(self._internal_error(request, "internal error"))
        try:
            return encode_result(result, request.requestid)
        except TypeError:  # orjson.JSONEncodeError: the endpoint answered something that is not JSON
            return encode_response(self._internal_error(request, "answer is not JSON"))

    async def _respond(self, request: Request, credentials: Credentials) -> Response:
        try:
            result = await self._call(request, credentials)
        except FlowBusError as exc:
            return self.fail(exc, request.requestid, peer=credentials.peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            return self._internal_error(request, "internal error")
        if isinstance(result, Page):
            return Response(page=result, requestid=request.requestid)
        return Response(data=result, requestid=request.requestid)

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
            logger.log(
                level,
                "call failed errorid=%s errorcode=%s peer=%s: %s",
                error.errorid,
                error.errorcode,
                peer,
                error.message,
            )
        return Response(error=error, requestid=requestid)

    def peek(self, request: Request, credentials: Credentials) -> bytes | None:
        """The stored JSON an OPEN answers, from its endpoint's fast path (:meth:`Endpoint.peek`),
        or None: then answer the call the usual way (:meth:`handle`).

        The caller is checked exactly as for the call: a refusal raises its FlowBusError here.
        Whatever this cannot settle at once (another method, a token not seen yet, an object
        not in the cache) answers None. :func:`~flowbus.protocol.encode_stored` makes the
        success envelope of the bytes.
        """
        if request.method is not _OPEN:
            return None
        assert request.objectid is not None  # parse_request refuses an OPEN without one
        return self.peek_open(request.endpoint, request.namespace, request.objectid, credentials)

    def peek_open(self, endpoint: str, namespace: str, objectid: str, credentials: Credentials) -> bytes | None:
        """:meth:`peek` for an OPEN given by its parts (a transport that has them needs no Request)."""
        entry = self.registry.get(endpoint)
        if entry is None or entry.peek is None or self.closing:
            return None
        if _OPEN not in entry.public:
            identity = self._known(credentials)
            if identity is None:
                return None
            self.authorizer.authorize(identity, _OPEN, endpoint, namespace, None)
        return entry.peek(namespace, objectid)

    async def _call(self, request: Request, credentials: Credentials) -> object:
        if self.closing:
            raise Unavailable("The bus is shutting down", retry_after=1)
        entry = self.registry.get(request.endpoint)
        public = entry is not None and request.method in entry.public
        if public:
            identity = ANONYMOUS
        elif (identity := self._known(credentials)) is None:
            identity = await self.authenticator.authenticate(credentials)
        if entry is None:
            raise NoSuchEndpoint(f"No endpoint named {request.endpoint[:128]!r}")
        handler = entry.handlers.get(request.method)
        if handler is None:
            raise MethodNotSupported(f"{request.endpoint} does not support {request.method}")
        if not public:
            permissions = entry.endpoint.permissions  # named permissions of RUN operations, if any
            run = permissions and request.method is _RUN
            permission = permissions.get(request.objectid or "") if run else None
            self.authorizer.authorize(identity, request.method, request.endpoint, request.namespace, permission)
        call = Call(
            request.method,
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
            return await handler(call)
        except asyncio.CancelledError:
            if self.deadlines.expired(asyncio.current_task()):
                raise Timeout() from None
            raise


def _unknown(credentials: Credentials) -> Identity | None:
    """The fast path of an authenticator that has none: always authenticate."""
    return None
