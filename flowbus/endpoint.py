"""The endpoint programming model: applications, endpoints, collections and the call they get.

An :class:`Application` groups endpoints. An :class:`Endpoint` implements any subset of
``list``, ``open``, ``create``, ``update``, ``delete``, ``index`` and ``run`` as async methods
taking a :class:`Call`; the methods it overrides are the ones it supports. A
:class:`Collection` is an endpoint backed by the store that has all of them but ``run``::

    app = Application("inventory")
    app.add(Collection("inventory/device", schema={"required": ["name"]}, searchable=["name"]))

    @app.endpoint("inventory/ping")
    class Ping(Endpoint):
        async def run(self, call: Call) -> dict[str, str]:
            return {"pong": call.objectid}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from uuid_utils import uuid7

from flowbus.auth.base import Credentials, Identity
from flowbus.backplane import Backplane, Event
from flowbus.errors import DoesNotExist, InvalidData, InvalidRequest, Unavailable
from flowbus.params import Query
from flowbus.protocol import Method, Page
from flowbus.schema import Schema
from flowbus.store.base import META, Checked, Insert, Peekable, Store

__all__ = [
    "Application",
    "Background",
    "Call",
    "Caller",
    "Collection",
    "Endpoint",
    "Services",
    "Sink",
    "Subscriptions",
    "check_endpoint_name",
    "check_objectid",
    "expected_version",
]

MAX_BATCH = 1000
"""Objects one CREATE may carry (``data`` an array)."""
_NAME = re.compile(r"[a-z0-9_-]+(/[a-z0-9_-]+)*")
_OBJECT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_META = META
_HANDLERS = {
    Method.LIST: "list",
    Method.OPEN: "open",
    Method.CREATE: "create",
    Method.UPDATE: "update",
    Method.DELETE: "delete",
    Method.INDEX: "index",
    Method.RUN: "run",
}


def check_endpoint_name(name: str) -> str:
    """Return ``name`` if it is a valid endpoint (or application) name, else raise ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid endpoint name {name!r}: lowercase [a-z0-9_-] segments separated by '/'")
    return name


class Caller(Protocol):
    """Makes a call through the dispatcher on behalf of ``identity`` (see :attr:`Services.call`)."""

    async def __call__(
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
    ) -> Any: ...


async def _no_dispatcher(identity: Identity, method: str, endpoint: str, **kwargs: Any) -> Any:
    raise Unavailable("No dispatcher serves these services")


def _nobody(subject: str) -> Identity | None:
    return None


def _nothing(identity: Identity, method: str, endpoint: str, namespace: str) -> bool:
    return False


@dataclass(slots=True)
class Services:
    """What the bus lends its endpoints: storage, events, the registry's descriptions, calls to
    other endpoints, and what a caller may call.

    Endpoints get no settings (they hold secrets): an application that needs a value is given it
    when it is built.

    Attributes:
        call: makes a call to any endpoint as a given identity, through the one dispatcher:
            authorized like a client's call, under the call timeout; answers the result's data
            (a LIST's items; with ``whole=True`` a LIST's or INDEX's whole :class:`Page`, its
            total included) or raises the call's FlowBusError. Made by the dispatcher.
        identify: the current identity of a user by subject (its roles and namespaces as they
            are now), or None when there is no such user; for work done later on a user's behalf.
        functions: the Python callables applications registered by name (:meth:`Application.function`).
        permits: ``permits(identity, method, endpoint, namespace)``: whether the dispatcher would
            let ``identity`` call ``method`` on ``endpoint`` in ``namespace``, asking the bus's
            authorizer as for a call (an endpoint that does not take the method: False; a public
            method: True). A RUN is answered for the method; an operation that also needs a named
            permission is checked when it is called. Set by the dispatcher.
    """

    store: Store
    backplane: Backplane
    describe: Callable[[], list[dict[str, Any]]]
    call: Caller = _no_dispatcher
    identify: Callable[[str], Identity | None] = _nobody
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    permits: Callable[[Identity, str, str, str], bool] = _nothing


class Subscriptions(Protocol):
    """The subscriptions of one connection (see :mod:`flowbus.subscriptions`)."""

    async def subscribe(self, call: Call, credentials: Credentials, requestid: str | int | None) -> dict[str, Any]:
        """Open the subscription ``call`` asks for; answers ``{"subscription", "seq"}``."""
        ...

    def unsubscribe(self, call: Call) -> dict[str, Any]:
        """End the subscription ``call`` names; answers ``{"subscription"}``."""
        ...


class Sink(Protocol):
    """What a transport that streams (a websocket, an event stream) lends one call."""

    @property
    def credentials(self) -> Credentials:
        """The caller's credentials, for checks made again later (a subscription's events)."""
        ...

    @property
    def requestid(self) -> str | int | None:
        """The call's requestid, for what is sent after its answer."""
        ...

    @property
    def subscriptions(self) -> Subscriptions:
        """The connection's subscriptions."""
        ...

    def progress(self, data: Any) -> None:
        """Send an interim answer (``status: 1``) of the call; never blocks, never raises."""
        ...


class Background(Protocol):
    """Work an application runs in the background while the bus runs (timers, an engine).

    Started after every endpoint, with the services endpoints get; stopped before them.
    """

    @property
    def name(self) -> str: ...

    async def start(self, services: Services) -> None: ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class Call:
    """One call as an endpoint sees it, whatever transport brought it."""

    method: Method
    endpoint: str
    objectid: str | None
    namespace: str
    parameters: dict[str, Any]
    data: dict[str, Any] | list[Any] | None
    identity: Identity
    services: Services
    peer: str = ""
    sink: Sink | None = None
    """What a streaming transport lends the call: :meth:`progress`'s way out, the connection's
    subscriptions (see :attr:`streams`)."""

    @property
    def streams(self) -> bool:
        """Whether the caller hears :meth:`progress`: a websocket call does, an HTTP one does not."""
        return self.sink is not None

    def progress(self, data: Any) -> None:
        """Send an interim answer (``status: 1``, the call's ``requestid``) before the final one.

        Never blocks and never fails: where the transport does not stream (HTTP, a call made
        inside the bus) or the caller is gone, it does nothing.
        """
        if self.sink is not None:
            self.sink.progress(data)

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def object(self) -> dict[str, Any]:
        """``data`` as the JSON object most methods take (``{}`` when none was given).

        Raises:
            InvalidRequest: ``data`` is an array (only some endpoints take several objects).
        """
        data = self.data
        if data is None:
            return {}
        if isinstance(data, list):
            raise InvalidRequest(f"{self.endpoint} {self.method} takes one JSON object as 'data', not an array")
        return data

    def query(self) -> Query:
        """The call's parameters read as paging, sorting, filters and search terms."""
        return Query.from_parameters(self.parameters)

    def publish(self, event: str, objectid: str, data: Any = None) -> None:
        """Publish an event about ``objectid`` on this call's subject (endpoint and namespace).

        The event is not durable: subscribers listening now get it, nobody later. Changes to stored
        objects are published by the change feed, from the store's change log.
        """
        published = Event(event, self.endpoint, objectid, self.namespace, data)
        self.services.backplane.publish(published.subject, published)


class Endpoint:
    """Base of every endpoint. Override the methods the endpoint supports.

    Attributes:
        name: the endpoint's bus-wide name, e.g. ``inventory/device``.
        description: one line for discovery and the OpenAPI document.
        schema: the JSON Schema of the objects' data, if any.
        public: methods callable without credentials (e.g. a login).
        permissions: RUN operations (by object id) that need a named permission besides the
            right to RUN on this endpoint, e.g. ``{"purge": "inventory.purge"}``.
    """

    name: str = ""
    description: str = ""
    schema: dict[str, Any] | None = None
    public: frozenset[Method] = frozenset()
    permissions: dict[str, str] = {}

    def __init__(self, name: str | None = None, *, description: str | None = None) -> None:
        if name is not None:
            self.name = name
        if description is not None:
            self.description = description
        check_endpoint_name(self.name)

    @property
    def methods(self) -> frozenset[Method]:
        """The methods this endpoint implements (the ones its class overrides)."""
        return frozenset(
            method for method, attr in _HANDLERS.items() if getattr(type(self), attr) is not getattr(Endpoint, attr)
        )

    def handler(self, method: Method) -> Callable[[Call], Any]:
        """Return the bound coroutine function that serves ``method``."""
        handler: Callable[[Call], Any] = getattr(self, _HANDLERS[method])
        return handler

    def describe(self) -> dict[str, Any]:
        """What discovery shows of this endpoint."""
        return {
            "id": self.name,
            "name": self.name,
            "description": self.description,
            "methods": sorted(self.methods, key=list(Method).index),
            "schema": self.schema,
        }

    async def startup(self, services: Services) -> None:
        """Called once when the bus starts, before the first call."""

    def peek(self, namespace: str, objectid: str) -> tuple[bytes, int | None] | None:
        """OPEN's answer as JSON bytes with the object's version (None if it has none), if it can
        be given at once; else None, and :meth:`open` runs.

        The fast path of OPEN: the dispatcher checks the caller as for any OPEN, then asks this
        before making a :class:`Call`. Override it only where ``open`` would answer exactly
        these bytes (a :class:`Collection` serves its objects from the store's cache this way).
        """
        return None

    async def shutdown(self) -> None:
        """Called once when the bus stops, after the last call."""

    async def list(self, call: Call) -> Page | list[Any]:
        raise NotImplementedError

    async def open(self, call: Call) -> Any:
        raise NotImplementedError

    async def create(self, call: Call) -> Any:
        raise NotImplementedError

    async def update(self, call: Call) -> Any:
        raise NotImplementedError

    async def delete(self, call: Call) -> Any:
        raise NotImplementedError

    async def index(self, call: Call) -> Any:
        raise NotImplementedError

    async def run(self, call: Call) -> Any:
        raise NotImplementedError


class Collection(Endpoint):
    """A store-backed collection: LIST, OPEN, CREATE, UPDATE, DELETE and INDEX.

    Args:
        name: the endpoint name; also the collection's name in the store.
        schema: a JSON Schema (draft 2020-12) that CREATE and UPDATE data must satisfy
            (``id``, ``created`` and ``updated`` are the bus's and are not validated).
        title: the field INDEX shows as an object's title.
        searchable: the fields full-text search looks at and INDEX shows; all top-level
            text fields when empty.
        description: one line for discovery.
    """

    def __init__(
        self,
        name: str,
        *,
        schema: dict[str, Any] | None = None,
        title: str = "name",
        searchable: Iterable[str] = (),
        description: str = "",
    ) -> None:
        super().__init__(name, description=description)
        self.schema = schema
        self.title = title
        self.searchable = tuple(searchable)
        self._schema = Schema(schema) if schema is not None else None
        self._store: Peekable | None = None  # set at startup when OPEN may be answered by peek()

    async def startup(self, services: Services) -> None:
        """Enables OPEN's fast path (:meth:`peek`); a subclass that overrides this calls it too.

        OPEN may skip ``open()`` only while ``open()`` is this class's: a subclass may answer otherwise.
        """
        if type(self).open is Collection.open and isinstance(services.store, Peekable):
            self._store = services.store

    def peek(self, namespace: str, objectid: str) -> tuple[bytes, int | None] | None:
        store = self._store
        return store.peek(self.name, namespace, objectid) if store is not None else None

    async def list(self, call: Call) -> Page:
        query = call.query()
        items, total = await call.store.query(self.name, call.namespace, query)
        return _page(items, query, total)

    async def open(self, call: Call) -> dict[str, Any]:
        assert call.objectid is not None
        obj = await call.store.get(self.name, call.namespace, call.objectid)
        if obj is None:
            raise DoesNotExist()
        return obj

    async def create(self, call: Call) -> Any:
        """Create one object, or with ``data`` an array, every object or none (one transaction),
        answering the array of created objects in order."""
        if isinstance(call.data, list):
            return await self._create_many(call, call.data)
        obj = _new_object(call.object)
        checked = Checked(self.prepare(obj))  # refused here, before the store is asked
        return await call.store.insert(self.name, call.namespace, obj, checked)

    async def _create_many(self, call: Call, items: Sequence[Any]) -> Sequence[dict[str, Any] | None]:
        if not 1 <= len(items) <= MAX_BATCH:
            raise InvalidRequest(f"CREATE takes 1 to {MAX_BATCH} objects at once")
        writes: list[Insert] = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise InvalidData("each object must be a JSON object")
                obj = _new_object(item)
                checked = Checked(self.prepare(obj))
            except InvalidData as exc:
                field = f"[{index}].{exc.field}" if exc.field else f"[{index}]"
                raise InvalidData(f"[{index}]: {exc.message}", field=field) from None
            writes.append(Insert(self.name, call.namespace, obj, checked))
        return await call.store.transaction(writes)

    async def update(self, call: Call) -> dict[str, Any]:
        assert call.objectid is not None
        changes = _user_fields(call.object)
        expect = expected_version(call.parameters)
        return await call.store.patch(self.name, call.namespace, call.objectid, changes, self.prepare, expect=expect)

    async def delete(self, call: Call) -> dict[str, Any]:
        assert call.objectid is not None
        expect = expected_version(call.parameters)
        return await call.store.delete(self.name, call.namespace, call.objectid, expect=expect)

    async def index(self, call: Call) -> Any:
        if call.objectid is not None:
            return self.index_entry(await self.open(call))
        query = call.query()
        items, total = await call.store.search(self.name, call.namespace, query)
        return _page([self.index_entry(obj) for obj in items], query, total)

    def index_entry(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What INDEX shows of an object: id, title, updated and the searchable fields."""
        entry = {
            "id": obj["id"],
            "title": obj.get(self.title),
            "updated": obj["updated"],
            "version": obj.get("version"),
        }
        for name in self.searchable:
            entry[name] = obj.get(name)
        return entry

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "title": self.title, "searchable": list(self.searchable)}

    def prepare(self, obj: dict[str, Any]) -> str:
        """Validate an object about to be written and return its search text: the
        :data:`~flowbus.store.Prepare` of this collection's writes, also for
        :meth:`~flowbus.store.Store.transaction`."""
        if self._schema is not None:
            self._schema.validate(_user_fields(obj))
        names = self.searchable or [k for k in obj if k not in _META]
        return " ".join(str(obj[k]) for k in names if isinstance(obj.get(k), (str, int, float)))


E = TypeVar("E", bound=Endpoint)
B = TypeVar("B", bound=Background)
F = TypeVar("F", bound=Callable[..., Any])


class Application:
    """A named group of endpoints, e.g. ``inventory``. Its name is the first segment of its HTTP paths."""

    def __init__(self, name: str, *, description: str = "") -> None:
        self.name = check_endpoint_name(name)
        self.description = description
        self.endpoints: list[Endpoint] = []
        self.background: list[Background] = []
        self.functions: dict[str, Callable[..., Any]] = {}

    def add(self, endpoint: E) -> E:
        """Add an endpoint instance to this application and return it."""
        self.endpoints.append(endpoint)
        return endpoint

    def endpoint(self, name: str, **kwargs: Any) -> Callable[[type[E]], type[E]]:
        """Class decorator: instantiate the Endpoint subclass under ``name`` and add it."""

        def register(cls: type[E]) -> type[E]:
            self.add(cls(name, **kwargs))
            return cls

        return register

    def run(self, work: B) -> B:
        """Run ``work`` in the background while the bus runs (see :class:`Background`); returns it."""
        self.background.append(work)
        return work

    def function(self, name: str) -> Callable[[F], F]:
        """Decorator: register a Python callable under ``name``, for work that names it (a flow's
        ``invoke`` state). Only registered callables can be named: never an import path."""
        check_endpoint_name(name)

        def register(fn: F) -> F:
            self.functions[name] = fn
            return fn

        return register


def new_objectid() -> str:
    """A fresh object id: a UUIDv7, which starts with the time it was made.

    New ids sort after older ones, so each insert lands at the end of the id index instead of
    on a random page of it: a batch of creates rewrites a few pages, not one page per object.
    """
    return str(uuid7())


def expected_version(parameters: dict[str, Any]) -> int | None:
    """The version an UPDATE or DELETE is made on (``parameters.version``), or None for any.

    Raises:
        InvalidRequest: it is not a positive integer (a JSON number or a string of digits).
    """
    value = parameters.get("version")
    if value is None:
        return None
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if type(value) is not int or value < 1:
        raise InvalidRequest("'version' must be a positive integer: the version the write is made on")
    return value


def _page(items: list[Any], query: Query, total: int) -> Page:
    """A LIST or INDEX page; cut short when the store stopped at the page's byte bound."""
    truncated = len(items) < query.limit and query.offset + len(items) < total
    return Page(items, query.limit, query.offset, total, truncated)


def check_objectid(value: Any, field: str = "id") -> str:
    """Return ``value`` if it can be the id of a new object: 1-128 characters of ``[A-Za-z0-9._:-]``.

    The one rule of ids that a caller gives (an empty id is refused, not replaced by a fresh one).

    Raises:
        InvalidData: anything else, naming ``field``.
    """
    if not isinstance(value, str) or not _OBJECT_ID.fullmatch(value):
        raise InvalidData(f"'{field}' must be 1-128 characters of [A-Za-z0-9._:-]", field=field)
    return value


def _new_object(data: dict[str, Any]) -> dict[str, Any]:
    """A new object of a collection: the caller's fields and its id (given, or a fresh one when
    ``id`` is absent or null)."""
    given = data.get("id")
    objectid = new_objectid() if given is None else check_objectid(given)
    return {"id": objectid, **_user_fields(data)}


def _user_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in _META}
