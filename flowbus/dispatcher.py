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
    MissingObjectId,
    NoSuchEndpoint,
    Timeout,
    Unavailable,
)
from flowbus.protocol import (
    NEEDS_OBJECTID,
    Method,
    Page,
    Request,
    Response,
    encode_response,
    new_errorid,
    parse_method,
    parse_request,
)
from flowbus.registry import Entry, Registry

__all__ = ["Begun", "Dispatcher"]

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
        self._known: Callable[[Credentials], Identity | None] = authenticator.known
        services.call = self.call

    async def call(
        self,
        identity: Identity,
        method: str,
        endpoint: str,
        *,
        objectid: str | None = None,
        namespace: str = "",
        data: Any = None,
        parameters: dict[str, Any] | None = None,
    ) -> Any:
        """A call made inside the bus on behalf of ``identity`` (a flow's step, a scheduled job).

        It takes the path of every call: the endpoint looked up, the identity authorized for
        ``method`` on ``endpoint`` in ``namespace``, the handler run under the call timeout.
        Answers the result's data (a LIST's or INDEX's items); raises the call's FlowBusError.
        """
        request = Request(parse_method(method), endpoint, objectid or None, None, namespace, parameters or {}, data)
        entry = self.registry.get(endpoint)
        if entry is None:
            raise NoSuchEndpoint(f"No endpoint named {endpoint[:128]!r}")
        if request.objectid is None and request.method in NEEDS_OBJECTID:
            raise MissingObjectId(f"{request.method} needs an objectid")
        handler = entry.handlers.get(request.method)
        self._authorize(entry, handler, request, identity, request.method in entry.public)
        response = await self.finish(Begun(request, Credentials(peer=identity.subject), entry, handler, True, identity))
        if response.error is not None:
            raise response.error
        return response.page.items if response.page is not None else response.data

    async def dispatch(self, request: Request, credentials: Credentials) -> Response:
        """Answer one request within the call timeout; never raises (but for cancellation).

        The one pipeline and error boundary of every transport: :meth:`begin` (synchronous),
        then :meth:`finish` for a call that has to wait. A FlowBusError becomes its envelope,
        anything else is logged under a fresh errorid and answered INTERNAL_ERROR.
        """
        begun = self.begin(request, credentials)
        if isinstance(begun, Response):
            return begun
        return await self.finish(begun)

    def begin(self, request: Request, credentials: Credentials) -> Response | Begun:
        """The pipeline's first, synchronous stage: look up, authenticate from what is known
        already, authorize, and answer what needs no waiting (an OPEN of a cached object, a
        refusal). Else the call as begun, for :meth:`finish`.

        A transport may call this itself, before it makes a task for :meth:`finish`, so that a
        call answered at once costs no task (Python 3.11 has no eager tasks).
        """
        try:
            return self._begin(request, credentials)
        except FlowBusError as exc:
            return self.fail(exc, request.requestid, peer=credentials.peer)
        except Exception:
            return self._internal_error(request, "internal error")

    async def finish(self, begun: Begun) -> Response:
        """The pipeline's second stage, in the caller's task, watched by :attr:`deadlines`:
        authenticate when :meth:`begin` could not, authorize, call the endpoint."""
        request = begun.request
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.watch(task)
        try:
            return await self._finish(begun, task)
        except FlowBusError as exc:
            return self.fail(exc, request.requestid, peer=begun.credentials.peer)
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

    def _begin(self, request: Request, credentials: Credentials) -> Response | Begun:
        if self.closing:
            raise Unavailable("The bus is shutting down", retry_after=1)
        entry = self.registry.get(request.endpoint)
        if entry is None:
            identity = self._known(credentials)
            if identity is None:  # who asks is checked first: a stranger learns no endpoint names
                return Begun(request, credentials, None, None, False)
            raise NoSuchEndpoint(f"No endpoint named {request.endpoint[:128]!r}")
        method = request.method
        public = method in entry.public
        identity = ANONYMOUS if public else self._known(credentials)
        handler = entry.handlers.get(method)
        if identity is None:
            return Begun(request, credentials, entry, handler, False)
        self._authorize(entry, handler, request, identity, public)
        if method is _OPEN and entry.peek is not None:
            assert request.objectid is not None  # parse_request refuses an OPEN without one
            stored = entry.peek(request.namespace, request.objectid)
            if stored is not None:
                return Response(stored=stored, requestid=request.requestid)
        return Begun(request, credentials, entry, handler, True, identity)

    def _authorize(
        self, entry: Entry, handler: Callable[[Any], Any] | None, request: Request, identity: Identity, public: bool
    ) -> None:
        if handler is None:
            raise MethodNotSupported(f"{request.endpoint} does not support {request.method}")
        if not public:
            permissions = entry.endpoint.permissions  # named permissions of RUN operations, if any
            run = permissions and request.method is _RUN
            permission = permissions.get(request.objectid or "") if run else None
            self.authorizer.authorize(identity, request.method, request.endpoint, request.namespace, permission)

    async def _finish(self, begun: Begun, task: asyncio.Task[Any]) -> Response:
        request, entry, handler = begun.request, begun.entry, begun.handler
        identity = begun.identity
        if not begun.authorized:
            identity = await self.authenticator.authenticate(begun.credentials)
            if entry is None:
                raise NoSuchEndpoint(f"No endpoint named {request.endpoint[:128]!r}")
            self._authorize(entry, handler, request, identity, False)
        assert handler is not None and identity is not None  # _authorize refuses a missing handler
        call = Call(
            request.method,
            request.endpoint,
            request.objectid,
            request.namespace,
            request.parameters,
            request.data,
            identity,
            self.services,
            begun.credentials.peer,
            begun.sink,
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


class Begun:
    """A call past :meth:`Dispatcher.begin` that has to wait: what ``finish`` goes on with."""

    __slots__ = ("authorized", "credentials", "entry", "handler", "identity", "request", "sink")

    def __init__(
        self,
        request: Request,
        credentials: Credentials,
        entry: Entry | None,
        handler: Callable[[Any], Any] | None,
        authorized: bool,
        identity: Identity | None = None,
    ) -> None:
        self.request = request
        self.credentials = credentials
        self.entry = entry
        self.handler = handler
        self.authorized = authorized
        self.identity = identity
        self.sink: Callable[[Any], None] | None = None
        """Where the call's interim answers go (:meth:`Call.progress`); set by a streaming transport."""


def _unknown(credentials: Credentials) -> Identity | None:
    """The fast path of an authenticator that has none: always authenticate."""
    return None
