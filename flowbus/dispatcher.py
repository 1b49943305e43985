"""The pipeline: every call, from any transport, goes through :meth:`Dispatcher.handle`.

A call is a :class:`~flowbus.protocol.Request` with the caller's
:class:`~flowbus.auth.base.Credentials` and, where the transport streams, a
:class:`~flowbus.endpoint.Sink`. ``handle`` runs it through ordered middleware, composed once
when the dispatcher is made::

    admit ─▶ route ─▶ authenticate ─▶ authorize ─▶ cached ─▶ deadline ─▶ endpoint

- **admit**: refuses every call while the bus shuts down (UNAVAILABLE).
- **route**: finds the endpoint and its handler in the frozen registry (a missing endpoint is
  refused after authentication, so that a stranger learns no endpoint names).
- **authenticate**: the caller's identity (ANONYMOUS for a public method, the given identity for
  a call made inside the bus).
- **authorize**: the handler exists (METHOD_NOT_SUPPORTED) and the identity may make the call
  (SUBSCRIBE is checked as OPEN: a subscriber gets what it may read).
- **cached**: an OPEN of an object the endpoint can answer at once (:meth:`Endpoint.peek`).
- **deadline**: the call timeout, ``asyncio.timeout``; a call past it answers TIMEOUT.
- **endpoint**: the handler, with a :class:`~flowbus.endpoint.Call`.

``handle`` is also the one error boundary: a FlowBusError becomes its error envelope, anything
else is logged under a fresh errorid and answered INTERNAL_ERROR (:mod:`flowbus.answers`); no traceback
reaches the caller.

:meth:`Dispatcher.answer_now` is the pipeline's one fast path: the same route, authentication
and authorization steps run synchronously for an OPEN that the cache answers, so that a
transport needs no task for it (Python 3.11 has no eager tasks). It answers only successes; any
other call (and any doubt) goes through ``handle``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from flowbus.answers import failure, internal_failure
from flowbus.auth.base import ANONYMOUS, Authenticator, Authorizer, Credentials, Identity
from flowbus.backplane import Backplane
from flowbus.endpoint import Call, Services, Sink
from flowbus.errors import (
    FlowBusError,
    InvalidRequest,
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
    check_depth,
    parse_method,
    parse_parameters,
)
from flowbus.registry import Entry, Registry
from flowbus.store.base import Store

__all__ = ["Dispatcher", "Exchange", "Middleware", "Next"]


class Exchange:
    """One call on its way through the pipeline: what each middleware reads and adds."""

    __slots__ = ("credentials", "entry", "identity", "request", "sink")

    def __init__(
        self, request: Request, credentials: Credentials, sink: Sink | None = None, identity: Identity | None = None
    ) -> None:
        self.request = request
        self.credentials = credentials
        self.sink = sink
        self.identity = identity
        """The caller's identity, once authenticated (given for a call made inside the bus)."""
        self.entry: Entry | None = None
        """The endpoint's registry entry, once routed (None: no such endpoint)."""


Next = Callable[[Exchange], Awaitable[Response]]
"""The rest of the pipeline, from one middleware's point of view."""
Middleware = Callable[[Next], Next]
"""Makes one stage of the pipeline, given the stage after it (called once, at construction)."""


class Dispatcher:
    """Routes calls to endpoints through one pipeline.

    Args:
        registry: the frozen registry.
        authenticator: turns credentials into an identity.
        authorizer: decides whether an identity may make a call.
        store: the store endpoints get in their :class:`~flowbus.endpoint.Services`.
        backplane: the backplane endpoints get likewise.
        identify: the current identity of a user by subject (None: nobody is known).
        call_timeout: seconds an endpoint may take before the call answers TIMEOUT.
    """

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticator,
        authorizer: Authorizer,
        *,
        store: Store,
        backplane: Backplane,
        identify: Callable[[str], Identity | None] | None = None,
        call_timeout: float = 30.0,
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.call_timeout = call_timeout
        self.closing = False
        self.services = Services(
            store, backplane, registry.describe, self.call, identify or _nobody, registry.functions, self.permits
        )
        """What endpoints get in their Call; its ``call`` makes calls through this dispatcher."""
        stages: Sequence[Middleware] = (
            self._admit,
            self._route,
            self._authenticate,
            self._authorize,
            self._cached,
            self._deadline,
        )
        pipeline: Next = self._endpoint
        for stage in reversed(stages):
            pipeline = stage(pipeline)
        self._pipeline = pipeline

    def open(self) -> None:
        """Admit calls (a dispatcher is made open)."""
        self.closing = False

    def close(self) -> None:
        """Refuse every call from now on (UNAVAILABLE): the bus is shutting down."""
        self.closing = True

    async def handle(self, request: Request, credentials: Credentials, sink: Sink | None = None) -> Response:
        """Answer one call; never raises (but for the cancellation of its task).

        The one pipeline and error boundary of every transport and of the calls made inside the bus.
        """
        return await self._handle(Exchange(request, credentials, sink))

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
        whole: bool = False,
    ) -> Any:
        """A call made inside the bus on behalf of ``identity`` (a flow's step, a scheduled job).

        It takes the path of every call (:meth:`handle`), with ``identity`` as the caller's.
        Answers the result's data (a LIST's or INDEX's items, or with ``whole`` its whole
        :class:`Page`); raises the call's FlowBusError.
        """
        if data is not None and not isinstance(data, (dict, list)):  # as the envelope is checked
            raise InvalidRequest("'data' must be a JSON object (or an array, for endpoints that take several)")
        if not isinstance(namespace, str):
            raise InvalidRequest("'namespace' must be a string")
        parameters = parse_parameters(parameters)
        check_depth(data, "data")
        check_depth(parameters, "parameters")
        request = Request(parse_method(method), endpoint, objectid or None, None, namespace, parameters, data)
        exchange = Exchange(request, Credentials(peer=identity.subject), None, identity)
        response = await self._handle(exchange)
        if response.error is not None:
            raise response.error
        if whole and response.page is not None:
            return response.page
        return response.result()

    def permits(self, identity: Identity, method: str, endpoint: str, namespace: str = "") -> bool:
        """Whether ``identity`` may call ``method`` on ``endpoint`` in ``namespace``, as the
        pipeline decides it: the endpoint takes the method, and it is public or the authorizer
        allows it (a RUN without the named permission one of its operations may also need)."""
        entry = self.registry.get(endpoint)
        if entry is None or method not in entry.handlers:
            return False
        if method in entry.public:
            return True
        try:
            self.authorizer.authorize(identity, method, endpoint, namespace, None)
        except FlowBusError:
            return False
        return True

    def answer_now(self, request: Request, credentials: Credentials) -> Response | None:
        """The fast path: the answer of an OPEN that the endpoint's cache gives at once, after the
        same route, authentication and authorization steps as :meth:`handle`; else None (the
        call goes through ``handle``, refusals included)."""
        if request.method is not Method.OPEN or self.closing:
            return None
        entry = self.registry.get(request.endpoint)
        if entry is None or entry.peek is None:
            return None
        if Method.OPEN not in entry.public:
            identity = self.authenticator.known(credentials)
            if identity is None:
                return None
            try:  # as _check does for an OPEN (named permissions are RUN's alone)
                self.authorizer.authorize(identity, Method.OPEN, request.endpoint, request.namespace, None)
            except FlowBusError:
                return None
        assert request.objectid is not None  # parse_request refuses an OPEN without one
        stored = entry.peek(request.namespace, request.objectid)
        if stored is None:
            return None
        return Response(stored=stored[0], version=stored[1], requestid=request.requestid)

    async def _handle(self, exchange: Exchange) -> Response:
        request = exchange.request
        try:
            return await self._pipeline(exchange)
        except FlowBusError as exc:
            return failure(exc, request.requestid, peer=exchange.credentials.peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            return internal_failure(f"endpoint={request.endpoint} method={request.method}", request.requestid)

    # -- the middleware, in order ------------------------------------------------------------

    def _admit(self, next: Next) -> Next:
        async def admit(exchange: Exchange) -> Response:
            if self.closing:
                raise Unavailable("The bus is shutting down", retry_after=1)
            return await next(exchange)

        return admit

    def _route(self, next: Next) -> Next:
        registry = self.registry

        async def route(exchange: Exchange) -> Response:
            request = exchange.request
            exchange.entry = registry.get(request.endpoint)
            if request.objectid is None and request.method in NEEDS_OBJECTID:
                raise MissingObjectId(f"{request.method} needs an objectid")
            return await next(exchange)

        return route

    def _authenticate(self, next: Next) -> Next:
        authenticator = self.authenticator

        async def authenticate(exchange: Exchange) -> Response:
            entry = exchange.entry
            if exchange.identity is None:
                if entry is not None and exchange.request.method in entry.public:
                    exchange.identity = ANONYMOUS
                else:
                    credentials = exchange.credentials
                    identity = authenticator.known(credentials)
                    exchange.identity = identity or await authenticator.authenticate(credentials)
            if entry is None:
                raise NoSuchEndpoint(f"No endpoint named {exchange.request.endpoint[:128]!r}")
            return await next(exchange)

        return authenticate

    def _authorize(self, next: Next) -> Next:
        async def authorize(exchange: Exchange) -> Response:
            entry, request, identity = exchange.entry, exchange.request, exchange.identity
            assert entry is not None and identity is not None  # routed and authenticated
            if request.method not in entry.handlers:
                raise MethodNotSupported(f"{request.endpoint} does not support {request.method}")
            if request.method not in entry.public:
                self._check(entry, request, identity)
            return await next(exchange)

        return authorize

    def _cached(self, next: Next) -> Next:
        async def cached(exchange: Exchange) -> Response:
            entry, request = exchange.entry, exchange.request
            assert entry is not None
            if request.method is Method.OPEN and entry.peek is not None:
                assert request.objectid is not None  # routing refuses an OPEN without one
                stored = entry.peek(request.namespace, request.objectid)
                if stored is not None:
                    return Response(stored=stored[0], version=stored[1], requestid=request.requestid)
            return await next(exchange)

        return cached

    def _deadline(self, next: Next) -> Next:
        seconds = self.call_timeout

        async def deadline(exchange: Exchange) -> Response:
            timeout = asyncio.timeout(seconds)
            try:
                async with timeout:
                    return await next(exchange)
            except TimeoutError:
                if timeout.expired():
                    raise Timeout() from None
                raise

        return deadline

    async def _endpoint(self, exchange: Exchange) -> Response:
        request, entry, identity = exchange.request, exchange.entry, exchange.identity
        assert entry is not None and identity is not None
        call = Call(
            request.method,
            request.endpoint,
            request.objectid,
            request.namespace,
            request.parameters,
            request.data,
            identity,
            self.services,
            exchange.credentials.peer,
            exchange.sink,
        )
        result = await entry.handlers[request.method](call)
        if isinstance(result, Page):
            return Response(page=result, requestid=request.requestid)
        return Response(data=result, requestid=request.requestid)

    # -- shared by the pipeline and the fast path ---------------------------------------------

    def _check(self, entry: Entry, request: Request, identity: Identity) -> None:
        """Raise PermissionDenied unless ``identity`` may make ``request``."""
        method = Method.OPEN if request.method is Method.SUBSCRIBE else request.method
        permissions = entry.endpoint.permissions  # named permissions of RUN operations, if any
        permission = permissions.get(request.objectid or "") if permissions and method is Method.RUN else None
        self.authorizer.authorize(identity, method, request.endpoint, request.namespace, permission)


def _nobody(subject: str) -> Identity | None:
    return None
