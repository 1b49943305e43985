"""gateway.request: HTTP requests as bus calls (paths, verbs, headers, If-Match, bodies)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from flowbus.auth.base import Credentials
from flowbus.endpoint import check_endpoint_name
from flowbus.errors import (
    FlowBusError,
    InvalidRequest,
    MethodNotSupported,
    MissingObjectId,
)
from flowbus.protocol import MAX_DEPTH, Method, Request
from gateway.request import (
    apply_if_match,
    choose_method,
    locate,
    parse_if_match,
    parse_json,
    parse_xml,
    plain_open,
    read_data,
    to_call,
)

APPS = {"inventory/device": "inventory", "system/endpoint": "system", "a/b/c": "a"}


def call(
    verb: str, path: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None
) -> tuple[Request, Credentials]:
    """to_call with case-insensitive headers, as aiohttp gives them."""
    return to_call(verb, path, CIMultiDict(headers or {}), query or {}, APPS, "10.0.0.1")


PLAIN_TARGETS = [
    pytest.param("GET", "/api/inventory/inventory/device/d1", {}, ("inventory/device", "d1", None), id="plain"),
    pytest.param("GET", "/api/a/a/b/c/x", {"Flow-Auth-Token": "t"}, ("a/b/c", "x", "t"), id="deep-endpoint-token"),
    pytest.param(
        "GET",
        "/api/inventory/inventory/device/d1",
        {"Accept": "application/xml"},
        ("inventory/device", "d1", None),
        id="accept-is-not-read-here",
    ),
    pytest.param("POST", "/api/inventory/inventory/device/d1", {}, None, id="not-get"),
    pytest.param("GET", "/api/inventory/inventory/device/", {}, None, id="no-objectid-list"),
    pytest.param("GET", "/api/inventory/inventory/device/d1?x=1", {}, None, id="query-string"),
    pytest.param("GET", "/api/inventory/inventory/device/d1?", {}, None, id="empty-query-string"),
    pytest.param("GET", "/api/inventory/inventory/device/d1#f", {}, None, id="fragment"),
    pytest.param("GET", "/api/inventory/inventory/device/a%2Fb", {}, None, id="percent-encoded"),
    pytest.param("GET", "/api/inventory/inventory/./device/d1", {}, None, id="dot-segment"),
    pytest.param("GET", "/api/inventory/inventory//device/d1", {}, None, id="empty-segment"),
    pytest.param("GET", "/api/system/inventory/device/d1", {}, None, id="wrong-app"),
    pytest.param("GET", "/api/inventory/inventory/d1", {}, None, id="unknown-endpoint"),
    pytest.param("GET", "/other/inventory/inventory/device/d1", {}, None, id="not-api"),
    pytest.param("GET", "http://h/api/inventory/inventory/device/d1", {}, None, id="absolute-form"),
    *(
        pytest.param("GET", "/api/inventory/inventory/device/d1", {name: value}, None, id=name)
        for name, value in (
            ("Flow-Request-Namespace", "n"),
            ("flow-request-objectid", "o"),
            ("Flow-Request-Method", "DELETE"),
            ("Authorization", "Bearer t"),
            ("X-API-Key", "k"),
        )
    ),
]


@pytest.mark.parametrize(("verb", "target", "headers", "expected"), PLAIN_TARGETS)
def test_plain_open(
    verb: str, target: str, headers: dict[str, str], expected: tuple[str, str, str | None] | None
) -> None:
    """Only a plain GET of an object is read off directly, and exactly as to_call reads it."""
    found = plain_open(verb, target, CIMultiDict(headers), APPS)
    assert found == expected
    if found is not None:
        request, credentials = call(verb, target[len("/api/") :], headers)
        assert (request.method, request.endpoint, request.objectid, request.namespace) == (Method.OPEN, *found[:2], "")
        assert (request.token, credentials.token, request.parameters) == (found[2], found[2], {})
        assert (credentials.username, credentials.apikey) == (None, None)


LOCATIONS = [
    pytest.param("inventory/inventory/device/", None, ("inventory/device", None), id="trailing-slash"),
    pytest.param("inventory/inventory/device/d1", None, ("inventory/device", "d1"), id="objectid-segment"),
    pytest.param("inventory/inventory/device/a%2Fb%25", None, ("inventory/device", "a/b%"), id="percent-decoded"),
    pytest.param("inventory/inventory/device", "h", ("inventory/device", "h"), id="given-objectid-whole-path"),
    pytest.param("inventory/inventory/device/", "h", ("inventory/device", "h"), id="given-objectid-slash"),
    pytest.param("a/a/b/c/x", None, ("a/b/c", "x"), id="deep-endpoint"),
    pytest.param("inventory/inventory/device", None, ("/inventory/inventory", "device"), id="no-slash-unknown"),
    pytest.param("system/inventory/device/", None, ("/system/inventory/device", None), id="wrong-app"),
    pytest.param("inventory/", None, ("/inventory/", None), id="app-only"),
    pytest.param("", None, ("//", None), id="empty"),
]


@pytest.mark.parametrize(("path", "objectid", "expected"), LOCATIONS)
def test_locate(path: str, objectid: str | None, expected: tuple[str, str | None]) -> None:
    """The path names endpoint and object id; what names no endpoint of its app gets an unregistrable name."""
    assert locate(path, objectid, APPS) == expected


@pytest.mark.parametrize("path", ["system/inventory/device/", "nope/x/", "inventory/inventory/device"])
def test_unmatched_paths_are_never_endpoint_names(path: str) -> None:
    """The name given for an unmatched path cannot be registered, so the dispatcher answers NO_SUCH_ENDPOINT."""
    endpoint, _ = locate(path, None, APPS)
    with pytest.raises(ValueError):
        check_endpoint_name(endpoint)


METHODS = [
    pytest.param("GET", None, False, Method.LIST, id="GET"),
    pytest.param("GET", None, True, Method.OPEN, id="GET-objectid"),
    pytest.param("POST", None, False, Method.CREATE, id="POST"),
    pytest.param("POST", None, True, Method.UPDATE, id="POST-objectid"),
    pytest.param("PUT", None, True, Method.UPDATE, id="PUT"),
    pytest.param("PATCH", None, True, Method.UPDATE, id="PATCH"),
    pytest.param("DELETE", None, True, Method.DELETE, id="DELETE"),
    pytest.param("PUT", None, False, Method.UPDATE, id="PUT-no-objectid"),
    pytest.param("GET", "INDEX", False, Method.INDEX, id="GET+INDEX"),
    pytest.param("GET", "delete", True, Method.DELETE, id="GET+delete"),
    pytest.param("GET", "List", False, Method.LIST, id="GET+List"),
    pytest.param("POST", "RUN", True, Method.RUN, id="POST+RUN"),
    pytest.param("POST", "DELETE", True, Method.DELETE, id="POST+DELETE"),
    pytest.param("PATCH", "UPDATE", True, Method.UPDATE, id="PATCH+UPDATE"),
]


@pytest.mark.parametrize(("verb", "declared", "has_objectid", "method"), METHODS)
def test_choose_method(verb: str, declared: str | None, has_objectid: bool, method: Method) -> None:
    """Verbs map to methods; Flow-Request-Method picks one the verb can carry."""
    assert choose_method(verb, declared, has_objectid) is method


REFUSED = [
    pytest.param("GET", "CREATE", MethodNotSupported, id="GET+CREATE"),
    pytest.param("GET", "UPDATE", MethodNotSupported, id="GET+UPDATE"),
    pytest.param("GET", "RUN", MethodNotSupported, id="GET+RUN"),
    pytest.param("POST", "OPEN", MethodNotSupported, id="POST+OPEN"),
    pytest.param("POST", "LIST", MethodNotSupported, id="POST+LIST"),
    pytest.param("POST", "INDEX", MethodNotSupported, id="POST+INDEX"),
    pytest.param("PUT", "DELETE", MethodNotSupported, id="PUT+DELETE"),
    pytest.param("DELETE", "OPEN", MethodNotSupported, id="DELETE+OPEN"),
    pytest.param("HEAD", None, MethodNotSupported, id="HEAD"),
    pytest.param("OPTIONS", "OPEN", MethodNotSupported, id="OPTIONS"),
    pytest.param("GET", "FETCH", InvalidRequest, id="unknown-method"),
]


@pytest.mark.parametrize(("verb", "declared", "error"), REFUSED)
def test_choose_method_refuses(verb: str, declared: str | None, error: type[FlowBusError]) -> None:
    """Other pairings are METHOD_NOT_SUPPORTED (405); an unknown method name INVALID_REQUEST (400)."""
    with pytest.raises(error) as caught:
        choose_method(verb, declared, True)
    assert type(caught.value) is error


def test_to_call_reads_headers() -> None:
    """Headers give object id, method, namespace and token; the query string the parameters."""
    headers = {
        "flow-request-objectid": "d1",
        "Flow-Request-Method": "INDEX",
        "Flow-Request-Namespace": "site",
        "Flow-Auth-Token": "tok",
    }
    request, credentials = call("GET", "inventory/inventory/device", headers, {"limit": "3", "q": "sw"})
    assert (request.method, request.endpoint, request.objectid) == (Method.INDEX, "inventory/device", "d1")
    assert (request.namespace, request.token, request.data) == ("site", "tok", None)
    assert request.parameters == {"limit": "3", "q": "sw"}
    assert credentials.token == "tok" and credentials.peer == "10.0.0.1"


def test_to_call_reads_query_twins() -> None:
    """token, objectid, namespace and method in the query string are twins, not parameters."""
    query = {"token": "t", "objectid": "d2", "namespace": "n", "method": "OPEN", "sort": "-name"}
    request, credentials = call("GET", "inventory/inventory/device", query=query)
    assert (request.method, request.objectid, request.namespace) == (Method.OPEN, "d2", "n")
    assert request.parameters == {"sort": "-name"} and credentials.token == "t"


def test_header_wins_over_query() -> None:
    """A header wins over its query-string twin; an empty header counts as absent."""
    headers = {"Flow-Request-Namespace": "h", "Flow-Request-ObjectId": ""}
    request, _ = call("GET", "inventory/inventory/device/", headers, {"namespace": "q", "objectid": "q1"})
    assert (request.namespace, request.objectid) == ("h", "q1")


@pytest.mark.parametrize(
    ("verb", "path", "headers"),
    [
        pytest.param("GET", "inventory/inventory/device/", {"Flow-Request-Method": "OPEN"}, id="OPEN"),
        pytest.param("PUT", "inventory/inventory/device/", {}, id="UPDATE"),
        pytest.param("DELETE", "inventory/inventory/device/", {}, id="DELETE"),
        pytest.param("POST", "inventory/inventory/device/", {"Flow-Request-Method": "RUN"}, id="RUN"),
    ],
)
def test_missing_objectid(verb: str, path: str, headers: dict[str, str]) -> None:
    """OPEN, UPDATE, DELETE and RUN without an object id are MISSING_OBJECTID."""
    with pytest.raises(MissingObjectId):
        call(verb, path, headers)


DATA = [
    pytest.param(Method.CREATE, b'{"name": "x"}', "application/json", {"name": "x"}, id="json"),
    pytest.param(Method.UPDATE, b'{"a": 1}', "", {"a": 1}, id="json-without-content-type"),
    pytest.param(Method.RUN, b"", "", None, id="run-without-body"),
    pytest.param(Method.RUN, b"  \n", "application/json", None, id="run-blank-body"),
    pytest.param(Method.CREATE, b"<d><name>x</name></d>", "application/xml", {"name": "x"}, id="xml"),
    pytest.param(Method.CREATE, b"<d/>", "text/xml; charset=utf-8", {}, id="xml-empty-root"),
]


@pytest.mark.parametrize(("method", "body", "content_type", "data"), DATA)
def test_read_data(method: Method, body: bytes, content_type: str, data: Any) -> None:
    """The body is the data: a JSON object, or an XML document's root children."""
    assert read_data(method, body, content_type) == data


BAD_BODIES = [
    pytest.param(Method.CREATE, b"", "application/json", id="create-without-body"),
    pytest.param(Method.UPDATE, b"   ", "application/json", id="update-blank-body"),
    pytest.param(Method.CREATE, b"{bad", "application/json", id="not-json"),
    pytest.param(Method.CREATE, b'"text"', "application/json", id="json-string"),
    pytest.param(Method.CREATE, b"7", "application/json", id="json-number"),
    pytest.param(Method.CREATE, b"\xff\xfe", "application/json", id="not-utf8-json"),
    pytest.param(Method.CREATE, b'<!DOCTYPE d [<!ENTITY e "x">]><d>&e;</d>', "application/xml", id="xml-dtd"),
    pytest.param(Method.CREATE, b'<!ENTITY e "x"><d/>', "application/xml", id="xml-entity"),
    pytest.param(Method.CREATE, b"<!doctype d><d/>", "application/xml", id="xml-doctype-lowercase"),
    pytest.param(Method.CREATE, b"<d><e>x</d>", "application/xml", id="xml-malformed"),
    pytest.param(Method.CREATE, b"<d>text</d>", "application/xml", id="xml-text-root"),
    pytest.param(Method.CREATE, "<d><n>é</n></d>".encode("utf-16"), "application/xml", id="xml-not-utf8"),
    pytest.param(Method.CREATE, b"<d>&undefined;</d>", "application/xml", id="xml-undefined-entity"),
]


@pytest.mark.parametrize(("method", "body", "content_type"), BAD_BODIES)
def test_bad_bodies_are_invalid_request(method: Method, body: bytes, content_type: str) -> None:
    """Missing, non-object, non-JSON and unsafe or malformed XML bodies are INVALID_REQUEST."""
    with pytest.raises(InvalidRequest) as caught:
        read_data(method, body, content_type)
    assert type(caught.value) is InvalidRequest


def test_parse_xml_shapes() -> None:
    """Attributes become fields, <item> children lists, empty elements null, nested elements objects."""
    body = b'<d id="7"><tags><item>a</item><item>b</item></tags><one><item>x</item></one><e/><o><k>v</k></o></d>'
    assert parse_xml(body) == {"id": "7", "tags": ["a", "b"], "one": ["x"], "e": None, "o": {"k": "v"}}


# -- nesting ------------------------------------------------------------------------------------


def nested_json(levels: int) -> bytes:
    """A JSON object whose objects nest ``levels`` deep (itself being level 1)."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def test_json_body_at_the_depth_limit() -> None:
    """A JSON body nested exactly MAX_DEPTH deep is read."""
    body = parse_json(nested_json(MAX_DEPTH))
    assert isinstance(body, dict) and body["a"]


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 253, 1000])
def test_json_body_too_deep(levels: int) -> None:
    """A JSON body nested deeper than MAX_DEPTH is INVALID_REQUEST."""
    with pytest.raises(InvalidRequest, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(nested_json(levels))


def test_json_body_many_brackets_but_shallow() -> None:
    """Many arrays side by side are not nesting: the count only decides whether to look."""
    body = orjson.dumps({"rows": [[1]] * 500})
    parsed = parse_json(body)
    assert isinstance(parsed, dict) and len(parsed["rows"]) == 500


def test_xml_body_depth() -> None:
    """An XML body's depth counts like JSON's: the limit is read, one level more is refused."""

    def xml(levels: int) -> bytes:
        return ("<r>" + "<a>" * levels + "v" + "</a>" * levels + "</r>").encode()

    assert parse_xml(xml(MAX_DEPTH))["a"]
    with pytest.raises(InvalidRequest, match="nested deeper"):
        parse_xml(xml(MAX_DEPTH + 1))
    with pytest.raises(InvalidRequest, match="nested deeper"):
        parse_xml(xml(2000))


def test_xml_lists_count_as_their_json() -> None:
    """XML lists are measured as the JSON they become, not by their elements (one more per <item>)."""

    def lists(wraps: int) -> bytes:
        inner = "v"
        for _ in range(wraps):
            inner = f"<l><item>{inner}</item></l>"
        return f"<r>{inner}</r>".encode()

    assert parse_xml(lists(MAX_DEPTH // 2))["l"]  # the root, then a list and an object per wrap: MAX_DEPTH
    with pytest.raises(InvalidRequest, match="nested deeper"):
        parse_xml(lists(MAX_DEPTH // 2 + 1))


# -- versions: ETag and If-Match ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "version"),
    [('"3"', 3), ("3", 3), (' "12" ', 12), ("*", None), (f'"{2**63 - 1}"', 2**63 - 1), ('"0"', 0)],
)
def test_parse_if_match(value: str, version: int | None) -> None:
    """If-Match is one quoted or bare version, or * for any."""
    assert parse_if_match(value) == version


@pytest.mark.parametrize(
    "value",
    ["", "abc", '"x"', 'W/"3"', '"3", "4"', '"3', '3"', '""', "-1", "1.0", f'"{2**63}"', "1" * 20, "* 3"],
)
def test_parse_if_match_refuses(value: str) -> None:
    """A malformed If-Match (weak, a list, not a version, out of range) is INVALID_REQUEST."""
    with pytest.raises(InvalidRequest, match="If-Match"):
        parse_if_match(value)


def test_if_match_becomes_the_version_parameter() -> None:
    """UPDATE and DELETE with If-Match carry parameters.version; other methods ignore it."""
    path = "inventory/device/d1"
    assert call("PUT", path, {"If-Match": '"4"'})[0].parameters == {"version": 4}
    assert call("DELETE", path, {"If-Match": "7"})[0].parameters == {"version": 7}
    assert call("DELETE", path, {"If-Match": "*"})[0].parameters == {}
    assert call("GET", path, {"If-Match": '"4"'})[0].parameters == {}
    assert call("PUT", path, {"If-Match": '"4"'}, {"version": "4"})[0].parameters == {"version": 4}


def test_if_match_disagreeing_with_the_parameter() -> None:
    """If-Match and a different version parameter are INVALID_REQUEST; a malformed If-Match too."""
    with pytest.raises(InvalidRequest, match="version"):
        call("PUT", "inventory/device/d1", {"If-Match": '"4"'}, {"version": "5"})
    with pytest.raises(InvalidRequest, match="If-Match"):
        call("DELETE", "inventory/device/d1", {"If-Match": 'W/"4"'})
    assert apply_if_match({"version": 2, "x": "y"}, "*") == {"version": 2, "x": "y"}
