"""The FlowBus wire protocol: envelopes in, envelopes out, no I/O.

``parse_request`` turns one message (a websocket text frame, or what the gateway made of
an HTTP request) into a :class:`Request`, raising :mod:`flowbus.errors` for anything that is
not a valid envelope. ``encode_response`` and ``encode_error`` turn answers into bytes.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from flowbus.errors import FlowBusError, InvalidRequest, MissingObjectId

__all__ = [
    "MAX_DEPTH",
    "NEEDS_DATA",
    "NEEDS_OBJECTID",
    "Method",
    "Page",
    "Request",
    "Response",
    "check_depth",
    "encode_error",
    "encode_response",
    "encode_result",
    "error_dict",
    "may_be_too_deep",
    "new_errorid",
    "normalize_endpoint",
    "parse_method",
    "parse_parameters",
    "parse_request",
    "response_dict",
    "success_dict",
    "too_deep",
]


class Method(enum.StrEnum):
    """The seven methods of the bus, and the two of subscriptions (websockets only)."""

    LIST = "LIST"
    OPEN = "OPEN"
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    INDEX = "INDEX"
    RUN = "RUN"
    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"


NEEDS_OBJECTID = frozenset({Method.OPEN, Method.UPDATE, Method.DELETE, Method.RUN})
NEEDS_DATA = frozenset({Method.CREATE, Method.UPDATE})

MAX_DEPTH = 64
"""How deep the arrays and objects of a call's ``data`` or ``parameters`` may nest (the value
itself is level 1). Whatever is accepted must stay encodable after every later step wraps it
again: an answer's envelope adds a level, a stored object is kept inside larger documents
(a workflow keeps call results several levels down in its variables, and answers wrap those),
and orjson encodes at most 254 levels. 64 leaves room for nearly 200 levels of such wrapping
while being far deeper than any real document needs."""

# Both spellings map to the member, so parsing is one dict lookup.
_METHODS: dict[str, Method] = {}
for _m in Method:
    _METHODS[_m.value] = _m
    _METHODS[_m.value.lower()] = _m

# orjson reads integer literals beyond 64 bits as floats, silently losing digits. Such a literal has
# at least 19 digits in a row, so only a message with such a run (rare) is checked again, exactly.
# The run is found by mapping every digit to "0" and looking for nineteen of them (several times
# faster than a regular expression).
# Only `data` and `parameters` carry numbers on to an endpoint (every other field must be a string, or
# for `requestid` a string or an integer, and a float there is refused anyway), so a message without
# them is not searched at all: an OPEN, DELETE or RUN without data pays nothing for this.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGIT_RUN = b"0" * 19
_NOT_JSON = "The message is not valid JSON (UTF-8, numbers within 64 bits, nested at most 1024 deep)"
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_STORED_HEAD = b'{"status":0,"success":true,"data":'  # encode_stored(): success_dict()'s shape, as bytes
_STORED_TAIL = b',"dataType":"JSON"}'
_STORED_REQUESTID = b',"dataType":"JSON","requestid":'
_STRING_OR_NONE = frozenset({str, type(None)})  # the types orjson gives a field that must be a string


@dataclass(slots=True)
class Request:
    """One call, whatever transport brought it."""

    method: Method
    endpoint: str
    objectid: str | None = None
    token: str | None = None
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | list[Any] | None = None
    """A JSON object; or an array, which only endpoints that take several objects accept."""
    requestid: str | int | None = None


@dataclass(slots=True)
class Page:
    """A page of a LIST or INDEX answer: the items and where they sit in the whole."""

    items: list[Any]
    limit: int
    offset: int
    total: int
    truncated: bool = False
    """The page was cut short of ``limit`` items because its JSON reached the answer's size
    bound (:data:`~flowbus.params.MAX_PAGE_BYTES`): ask again from ``offset + len(items)``."""


@dataclass(slots=True)
class Response:
    """The answer to one call: either ``data`` (and maybe ``page``) or ``error``."""

    data: Any = None
    page: Page | None = None
    error: FlowBusError | None = None
    requestid: str | int | None = None
    status: int = 0
    stored: bytes | None = None
    """An OPEN answered from the cache: the object's stored JSON, joined into the envelope as it is."""
    version: int | None = None
    """The version of the object in :attr:`stored` (the data of other answers carries its own)."""

    def result(self) -> Any:
        """What a success answers, as values: a page's items, the stored object decoded, the data."""
        if self.page is not None:
            return self.page.items
        if self.stored is not None:
            return orjson.loads(self.stored)
        return self.data

    @property
    def object_version(self) -> int | None:
        """The integer ``version`` of the one object this answer carries, if it carries one."""
        if self.stored is not None:
            return self.version
        data = self.data
        if self.error is None and self.page is None and isinstance(data, dict):
            version = data.get("version")
            return version if type(version) is int else None
        return None

    @property
    def success(self) -> bool:
        return self.error is None

    @property
    def http_status(self) -> int:
        return self.error.http_status if self.error is not None else 200


def new_errorid() -> str:
    """Return a fresh error id (a UUID4 string)."""
    return str(uuid.uuid4())


def normalize_endpoint(name: str) -> str:
    """Strip the leading and trailing ``/`` that clients may put around an endpoint name."""
    return name.strip("/")


def parse_parameters(value: Any) -> dict[str, Any]:
    """Turn ``parameters`` (an object, a URL-encoded string, or nothing) into a dict.

    Raises:
        InvalidRequest: for any other type.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return dict(parse_qsl(value.lstrip("?"), keep_blank_values=True))
    raise InvalidRequest("'parameters' must be an object or a URL-encoded string")


def parse_request(
    raw: str | bytes,
    *,
    default_endpoint: str | None = None,
    default_token: str | None = None,
) -> Request:
    """Parse one JSON envelope.

    Args:
        raw: the message as received.
        default_endpoint: the endpoint named by the connection's path, if any.
        default_token: the token given when the connection was opened, if any.

    Raises:
        InvalidRequest: not JSON, not an object, wrong field types, unknown method.
        MissingObjectId: the method needs an objectid and none was given.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(_NOT_JSON) from None
    if not isinstance(obj, dict):
        raise InvalidRequest("The message must be a JSON object")
    requestid = obj.get("requestid")
    try:
        if "data" in obj or "parameters" in obj:
            if may_be_too_deep(raw):
                check_depth(obj.get("data"), "data")
                check_depth(obj.get("parameters"), "parameters")
            if _has_long_digits(raw):
                _check_integers(raw)
        return _build_request(obj, requestid, default_endpoint, default_token)
    except FlowBusError as exc:
        if isinstance(requestid, (str, int)) and not isinstance(requestid, bool):
            exc.requestid = requestid
        raise


def may_be_too_deep(raw: str | bytes) -> bool:
    """Whether JSON text has brackets enough to nest deeper than :data:`MAX_DEPTH` levels.

    A C-speed count of ``{`` and ``[``, those inside strings included, so it may say yes wrongly
    but never no: what it says no to needs no :func:`check_depth` walk, and most text is that.
    """
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[") >= MAX_DEPTH
    return raw.count(b"{") + raw.count(b"[") >= MAX_DEPTH


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether the arrays and objects of ``value`` nest deeper than ``limit`` levels.

    ``value`` itself, if an array or object, is level 1. Walks level by level, without recursion,
    and stops at the first level past ``limit``.
    """
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for container in level:
            children = container.values() if isinstance(container, dict) else container
            below.extend(child for child in children if isinstance(child, (dict, list)))
        level = below
    return False


def check_depth(value: Any, name: str) -> None:
    """Raise InvalidRequest if ``value`` nests deeper than :data:`MAX_DEPTH` levels.

    Args:
        value: the parsed value of a field.
        name: the field's name, for the message.
    """
    if too_deep(value):
        raise InvalidRequest(f"'{name}' is nested deeper than {MAX_DEPTH} levels")


def _has_long_digits(raw: str | bytes) -> bool:
    if isinstance(raw, str):
        raw = raw.encode(errors="surrogatepass")
    return _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZERO)


def _check_int(literal: str) -> int:
    if len(literal) > 20 or not _INT_MIN <= (value := int(literal)) <= _INT_MAX:
        raise InvalidRequest("Integers must fit in 64 bits")
    return value


def _check_integers(raw: str | bytes) -> None:
    """Raise InvalidRequest if an integer literal in ``raw`` does not fit 64 bits (slow, exact)."""
    try:
        json.loads(raw, parse_int=_check_int)
    except RecursionError:
        raise InvalidRequest("The message is nested too deep") from None


def _build_request(
    obj: dict[str, Any],
    requestid: Any,
    default_endpoint: str | None,
    default_token: str | None,
) -> Request:
    if requestid is not None and (isinstance(requestid, bool) or not isinstance(requestid, (str, int))):
        raise InvalidRequest("'requestid' must be a string or an integer")
    method = obj.get("method")
    method = _METHODS.get(method) if type(method) is str else None
    if method is None:
        method = parse_method(obj.get("method"))
    get = obj.get
    endpoint, objectid, token, namespace = get("endpoint"), get("objectid"), get("token"), get("namespace")
    ok = _STRING_OR_NONE
    if not (type(endpoint) in ok and type(objectid) in ok and type(token) in ok and type(namespace) in ok):
        _refuse_non_strings(obj)
    endpoint = endpoint or default_endpoint
    if not endpoint or not (endpoint := endpoint.strip("/")):
        raise InvalidRequest("'endpoint' is required (or open the connection on the endpoint's path)")
    objectid = objectid or None
    if objectid is None and method in NEEDS_OBJECTID:
        raise MissingObjectId(f"{method} needs an objectid")
    data = get("data")
    if data is not None and not isinstance(data, (dict, list)):
        raise InvalidRequest("'data' must be a JSON object (or an array, for endpoints that take several)")
    if data is None and method in NEEDS_DATA:
        raise InvalidRequest(f"{method} needs 'data' (a JSON object)")
    parameters = get("parameters")
    return Request(
        method,
        endpoint,
        objectid,
        token or default_token,
        namespace or "",
        {} if parameters is None else parse_parameters(parameters),
        data,
        requestid,
    )


def _refuse_non_strings(obj: dict[str, Any]) -> None:
    for name in ("endpoint", "objectid", "token", "namespace"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a string")


def parse_method(value: Any) -> Method:
    """Read a method name (any case); raise InvalidRequest if it is not one of the seven."""
    if value is None:
        raise InvalidRequest("'method' is required")
    if not isinstance(value, str):
        raise InvalidRequest("'method' must be a string")
    method = _METHODS.get(value) or _METHODS.get(value.upper())
    if method is None:
        raise InvalidRequest(f"Unknown method {value[:32]!r}; expected one of {', '.join(Method)}")
    return method


def response_dict(response: Response) -> dict[str, Any]:
    """Return the envelope of ``response`` as a plain dict (for JSON or XML rendering)."""
    if response.error is not None:
        return error_dict(response.error, response.requestid)
    if response.stored is not None:
        return success_dict(orjson.loads(response.stored), response.requestid, response.status)
    result = response.page if response.page is not None else response.data
    return success_dict(result, response.requestid, response.status)


def success_dict(result: Any, requestid: str | int | None = None, status: int = 0) -> dict[str, Any]:
    """Return the success envelope of an endpoint's result: a :class:`Page` or any JSON value."""
    if isinstance(result, Page):
        out: dict[str, Any] = {
            "status": status,
            "success": True,
            "data": result.items,
            "dataType": "JSON",
            "page": {"limit": result.limit, "offset": result.offset, "total": result.total},
        }
        if result.truncated:
            out["page"]["truncated"] = True
    else:
        out = {"status": status, "success": True, "data": result, "dataType": "JSON"}
    if requestid is not None:
        out["requestid"] = requestid
    return out


def error_dict(error: FlowBusError, requestid: str | int | None = None) -> dict[str, Any]:
    """Return the error envelope for ``error``."""
    out: dict[str, Any] = {
        "status": 0,
        "success": False,
        "message": error.message,
        "errorcode": error.errorcode,
        "dataType": "JSON",
        "errorid": error.errorid or new_errorid(),
    }
    if error.retry_after is not None:
        out["retryAfter"] = error.retry_after
    field = getattr(error, "field", None)
    if field is not None:
        out["field"] = field
    requestid = requestid if requestid is not None else error.requestid
    if requestid is not None:
        out["requestid"] = requestid
    return out


def encode_response(response: Response) -> bytes:
    """Encode ``response`` as the JSON bytes of its envelope (stored JSON joined as it is)."""
    if response.stored is not None:
        return encode_stored(response.stored, response.requestid)
    return orjson.dumps(response_dict(response))


def encode_result(result: Any, requestid: str | int | None = None) -> bytes:
    """Encode the success envelope of an endpoint's result, without building a :class:`Response`."""
    return orjson.dumps(success_dict(result, requestid))


def encode_stored(body: bytes, requestid: str | int | None = None) -> bytes:
    """Encode the success envelope of an object's stored JSON, embedding the bytes as they are.

    The same bytes as :func:`encode_result` of the decoded object, joined rather than encoded."""
    if requestid is None:
        return b"".join((_STORED_HEAD, body, _STORED_TAIL))
    return b"".join((_STORED_HEAD, body, _STORED_REQUESTID, orjson.dumps(requestid), b"}"))


def encode_error(error: FlowBusError, requestid: str | int | None = None) -> bytes:
    """Encode an error envelope."""
    return orjson.dumps(error_dict(error, requestid))
