"""An HTTP request as a bus call: pure functions, no aiohttp, no I/O.

An HTTP call ``VERB /api/<app>/<endpoint...>/<objectid>`` becomes a
:class:`flowbus.protocol.Request` plus the caller's :class:`flowbus.auth.base.Credentials`
(:func:`to_call`, with :mod:`gateway.credentials`), and its body becomes the request's ``data``
(:func:`read_data`, JSON or XML). Every refusal is a :class:`flowbus.errors.FlowBusError`, so
the caller answers it as an envelope like any other error; :mod:`gateway.rendering` writes the
answer.

``headers`` arguments must look up names case-insensitively (aiohttp's ``CIMultiDict`` does);
``query`` arguments are mappings of the decoded query string (a parameter given more than once
becomes an array of its values).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import unquote
from xml.parsers.expat import ExpatError

import orjson
import xmltodict
from multidict import istr

from flowbus.auth.base import Credentials
from flowbus.errors import (
    InvalidRequest,
    MethodNotSupported,
    MissingObjectId,
)
from flowbus.protocol import (
    MAX_DEPTH,
    NEEDS_DATA,
    NEEDS_OBJECTID,
    Method,
    Request,
    check_depth,
    may_be_too_deep,
    parse_method,
    too_deep,
)
from gateway.credentials import TOKEN, read_credentials, token_only, twin
from gateway.rendering import is_xml

__all__ = [
    "BODY_METHODS",
    "allowed_verbs",
    "apply_if_match",
    "choose_method",
    "locate",
    "parse_if_match",
    "parse_json",
    "parse_xml",
    "plain_open",
    "read_data",
    "to_call",
]

BODY_METHODS = frozenset({Method.CREATE, Method.UPDATE, Method.RUN})
"""The methods whose call reads the HTTP body (RUN's is optional)."""


# Header name and query-string twin of each envelope field that travels outside the body. The
# names are istr: a case-insensitive multidict looks those up without case-folding them each time.
OBJECTID = (istr("Flow-Request-ObjectId"), "objectid")
NAMESPACE = (istr("Flow-Request-Namespace"), "namespace")
METHOD = (istr("Flow-Request-Method"), "method")
_TWINS = frozenset(twin for _, twin in (TOKEN, OBJECTID, NAMESPACE, METHOD))
_OBJECTID, _METHOD, _NAMESPACE = OBJECTID[0], METHOD[0], NAMESPACE[0]
_API = "/api/"
_IF_MATCH = istr("If-Match")
_CONDITIONAL = frozenset({Method.UPDATE, Method.DELETE})
_ENTITY_TAG = re.compile(r'"?([0-9]{1,19})"?')
_MAX_VERSION = 2**63 - 1


PlainOpen = tuple[str, str, str | None]
"""What :func:`plain_open` reads off a plain GET: the endpoint, the object id, the token."""


# What each verb means without Flow-Request-Method: (without an object id, with one).
_DEFAULTS: dict[str, tuple[Method, Method]] = {
    "GET": (Method.LIST, Method.OPEN),
    "POST": (Method.CREATE, Method.UPDATE),
    "PUT": (Method.UPDATE, Method.UPDATE),
    "PATCH": (Method.UPDATE, Method.UPDATE),
    "DELETE": (Method.DELETE, Method.DELETE),
}
# What each verb may carry in Flow-Request-Method. PUT, PATCH and DELETE carry only
# their own meaning; a GET never creates, updates or runs.
_CARRIES: dict[str, frozenset[Method]] = {
    "GET": frozenset({Method.LIST, Method.OPEN, Method.INDEX, Method.DELETE}),
    "POST": frozenset({Method.CREATE, Method.UPDATE, Method.RUN, Method.DELETE}),
    "PUT": frozenset({Method.UPDATE}),
    "PATCH": frozenset({Method.UPDATE}),
    "DELETE": frozenset({Method.DELETE}),
}

_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
# Characters XML 1.0 cannot carry, even escaped.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_REFUSED = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


# -- request ----------------------------------------------------------------------------------


def to_call(
    verb: str,
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    apps: Mapping[str, str],
    peer: str = "",
) -> tuple[Request, Credentials]:
    """Translate everything of an HTTP call but its body.

    Args:
        verb: the HTTP method, upper-case.
        path: the raw (still percent-encoded) path after ``/api/``.
        headers: the request headers.
        query: the decoded query string.
        apps: endpoint name → application name, for every registered endpoint.
        peer: the client's address.

    Returns:
        The request (``data`` still None; see :func:`read_data`) and the credentials.

    Raises:
        MethodNotSupported: the verb cannot carry the method.
        InvalidRequest: an unknown method name.
        MissingObjectId: the method needs an object id and none was given.
        AuthFailed: malformed HTTP Basic credentials.
    """
    if query:
        given_objectid, declared = twin(headers, query, OBJECTID), twin(headers, query, METHOD)
        namespace = twin(headers, query, NAMESPACE) or ""
        parameters = _parameters(query)
    else:  # the usual case: every field is a header (or absent), nothing to look up twice
        given_objectid, declared = headers.get(OBJECTID[0]) or None, headers.get(METHOD[0]) or None
        namespace, parameters = headers.get(NAMESPACE[0]) or "", {}
    endpoint, objectid = locate(path, given_objectid, apps)
    method = choose_method(verb, declared, objectid is not None)
    if objectid is None and method in NEEDS_OBJECTID:
        raise MissingObjectId(f"{method} needs an object id: end the path with it, or send Flow-Request-ObjectId")
    if not query and token_only(headers):  # a token header, or none
        credentials = Credentials(token=headers.get(TOKEN[0]) or None, peer=peer)
    else:
        credentials = read_credentials(headers, query, peer)
    if method in _CONDITIONAL and (if_match := headers.get(_IF_MATCH)) is not None:
        parameters = apply_if_match(parameters, if_match)
    # Positional: a dataclass's __init__ binds keywords about 0.2 us slower per call.
    return Request(method, endpoint, objectid, credentials.token, namespace, parameters), credentials


def parse_if_match(value: str) -> int | None:
    """The version an If-Match header asks for: ``"<n>"`` or a bare ``n``; ``*`` (any version) is None.

    Versions are the strong validators :func:`etag` sends, so a weak tag (``W/"n"``) or a list
    of several tags is refused rather than read as something it does not mean.

    Raises:
        InvalidRequest: anything else.
    """
    value = value.strip()
    if value == "*":
        return None
    match = _ENTITY_TAG.fullmatch(value)
    if match is None or value.count('"') == 1 or int(match.group(1)) > _MAX_VERSION:
        raise InvalidRequest('If-Match must be one version, "<n>" (or *)')
    return int(match.group(1))


def apply_if_match(parameters: dict[str, Any], if_match: str) -> dict[str, Any]:
    """Return ``parameters`` with the If-Match header's version as ``version`` (a conditional write).

    Raises:
        InvalidRequest: a malformed If-Match, or one that disagrees with a ``version`` parameter.
    """
    version = parse_if_match(if_match)
    if version is None:
        return parameters
    given = parameters.get("version")
    if given is not None and str(given) != str(version):
        raise InvalidRequest(f"If-Match asks for version {version} but the 'version' parameter is {str(given)[:32]!r}")
    return {**parameters, "version": version}


def plain_open(verb: str, target: str, headers: Mapping[str, str], apps: Mapping[str, str]) -> PlainOpen | None:
    """The OPEN a plain GET of an object asks for, without the rest of :func:`to_call`.

    Plain: ``GET /api/<app>/<endpoint...>/<objectid>`` of a registered endpoint, with no query
    string, nothing percent-encoded, no dot segment or empty segment, no Flow-Request-* header
    and no credentials but Flow-Auth-Token. :func:`to_call` reads such a request the same way
    (namespace "", the token alone); anything else is None, and it is left to :func:`to_call`.

    Args:
        verb: the HTTP method, upper-case.
        target: the request target as sent (path and query string).
        headers: the request headers.
        apps: endpoint name → application name, for every registered endpoint.
    """
    if verb != "GET" or "?" in target or "#" in target or "%" in target or "/." in target or "//" in target:
        return None
    if _OBJECTID in headers or _METHOD in headers or _NAMESPACE in headers:
        return None
    if not token_only(headers) or not target.startswith(_API):
        return None
    # locate()'s reading of such a path: <app>/<endpoint...>/<objectid>, the endpoint the app's
    app, _, rest = target[len(_API) :].partition("/")
    endpoint, _, objectid = rest.rpartition("/")
    if not objectid or apps.get(endpoint) != app:
        return None
    return endpoint, objectid, headers.get(TOKEN[0]) or None


def _parameters(query: Mapping[str, str]) -> dict[str, Any]:
    """The call's parameters from the query string: ``?tag=a&tag=b`` gives ``{"tag": ["a", "b"]}``."""
    parameters: dict[str, Any] = {}
    for key, value in query.items():
        if key in _TWINS:
            continue
        if key in parameters:
            prior = parameters[key]
            parameters[key] = [*prior, value] if isinstance(prior, list) else [prior, value]
        else:
            parameters[key] = value
    return parameters


def locate(path: str, objectid: str | None, apps: Mapping[str, str]) -> tuple[str, str | None]:
    """Read the endpoint and object id a path names.

    ``<app>/<endpoint...>/`` names the endpoint; ``<app>/<endpoint...>/<objectid>`` also the
    (percent-decoded) object id — unless ``objectid`` is already given (by header or query
    string), in which case the whole path after ``<app>`` names the endpoint.

    Args:
        path: the raw path after ``/api/``.
        objectid: the object id given outside the path, or None.
        apps: endpoint name → application name.

    A path that names no endpoint of ``<app>`` (unknown, or another application's) gives
    ``/<app>/<endpoint...>`` as the endpoint: no endpoint has that name (names never start
    with ``/``), so the dispatcher answers NO_SUCH_ENDPOINT in its usual order, after the
    credentials, exactly as over websockets.

    Returns:
        (endpoint name, object id or None)
    """
    if "%" in path:
        return _locate_encoded(path, objectid, apps)
    app, _, rest = path.partition("/")
    if objectid is None and rest and not rest.endswith("/"):
        rest, _, objectid = rest.rpartition("/")
    endpoint = rest.strip("/")
    if not endpoint or apps.get(endpoint) != app:
        return f"/{app}/{endpoint}", objectid
    return endpoint, objectid


def _locate_encoded(path: str, objectid: str | None, apps: Mapping[str, str]) -> tuple[str, str | None]:
    """:func:`locate` for a path with percent-escapes: each part decoded once it is split off."""
    app, _, rest = path.partition("/")
    if objectid is None and rest and not rest.endswith("/"):
        rest, _, last = rest.rpartition("/")
        objectid = unquote(last)
    endpoint = unquote(rest).strip("/")
    app = unquote(app)
    if not endpoint or apps.get(endpoint) != app:
        return f"/{app}/{endpoint}", objectid
    return endpoint, objectid


def choose_method(verb: str, declared: str | None, has_objectid: bool) -> Method:
    """The bus method of an HTTP call.

    Args:
        verb: the HTTP method, upper-case.
        declared: the Flow-Request-Method value, or None.
        has_objectid: whether the call names an object.

    Raises:
        MethodNotSupported: the verb is not mapped, or cannot carry ``declared``.
        InvalidRequest: ``declared`` is not a method name.
    """
    carries = _CARRIES.get(verb)
    if carries is None:
        raise MethodNotSupported(f"HTTP {verb[:16]} is not mapped to a bus method")
    if declared is None:
        return _DEFAULTS[verb][has_objectid]
    method = parse_method(declared)
    if method not in carries:
        raise MethodNotSupported(f"HTTP {verb} cannot carry {method}")
    return method


def allowed_verbs(methods: Collection[Method]) -> str:
    """The ``Allow`` header of a 405: the HTTP verbs that can carry one of ``methods`` (those of
    the endpoint, or every method when the endpoint is not known)."""
    return ", ".join(verb for verb, carries in _CARRIES.items() if not carries.isdisjoint(methods))


# -- body -------------------------------------------------------------------------------------


def read_data(method: Method, body: bytes, content_type: str) -> dict[str, Any] | list[Any] | None:
    """The ``data`` of a call from its HTTP body: XML for XML content types, JSON otherwise.

    Raises:
        InvalidRequest: no body where ``method`` needs one; not a JSON object or array; bad or refused XML.
    """
    if not body.strip():
        if method in NEEDS_DATA:
            raise InvalidRequest(f"{method} needs a body: a JSON object")
        return None
    return parse_xml(body) if is_xml(content_type) else parse_json(body)


def parse_json(body: bytes) -> dict[str, Any] | list[Any]:
    """Parse a JSON object (or an array, for endpoints that take several objects).

    Raises:
        InvalidRequest: not JSON, not an object or array, or nested deeper than :data:`~flowbus.protocol.MAX_DEPTH`.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not valid JSON (UTF-8, at most 64-bit numbers)") from None
    if not isinstance(data, (dict, list)):
        raise InvalidRequest("The body must be a JSON object (or an array, for endpoints that take several)")
    if may_be_too_deep(body):
        check_depth(data, "data")
    return data


def parse_xml(body: bytes) -> dict[str, Any]:
    """Parse an XML document: the root element's children (and attributes) become the object.

    Text values stay strings; an empty element is null; an element whose children are all
    ``<item>`` elements is a list (the shape :func:`to_xml` writes).

    Raises:
        InvalidRequest: not UTF-8, has a DTD or entity declaration, not well-formed, a root
            element without children, or nested deeper than :data:`~flowbus.protocol.MAX_DEPTH`.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("An XML body must be UTF-8") from None
    if _XML_REFUSED.search(text):
        raise InvalidRequest("DTDs and entity declarations are not accepted")
    try:
        document = xmltodict.parse(text, disable_entities=True, attr_prefix="", force_list=("item",))
    except (ExpatError, ValueError):
        raise InvalidRequest("The body is not well-formed XML") from None
    root = next(iter(document.values()), None)
    if root is None:
        return {}
    if not isinstance(root, dict):
        raise InvalidRequest("The XML root element must contain one element per field")
    # Each level of a list is two elements (the list's and its <item>): refuse what cannot fit before
    # the recursive conversion, then check the converted object exactly.
    if too_deep(root, 2 * MAX_DEPTH):
        check_depth(root, "data")
    data = {key: _from_xml(value) for key, value in root.items()}
    check_depth(data, "data")
    return data


def _from_xml(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_xml(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1 and "item" in value:
            return _from_xml(value["item"])
        return {key: _from_xml(item) for key, item in value.items()}
    return value
