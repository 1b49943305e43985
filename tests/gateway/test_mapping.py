"""HTTP → call translation seen end to end by an endpoint that echoes its call."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from tests.gateway.helpers import ECHO, echoed, fetch

OBJECT = ECHO + "o-1"
BODY = {"k": 1}

VERB_MAPPING = [
    pytest.param("GET", ECHO, None, "LIST", id="GET-collection=LIST"),
    pytest.param("GET", OBJECT, None, "OPEN", id="GET-object=OPEN"),
    pytest.param("POST", ECHO, None, "CREATE", id="POST-collection=CREATE"),
    pytest.param("POST", OBJECT, None, "UPDATE", id="POST-object=UPDATE"),
    pytest.param("PUT", OBJECT, None, "UPDATE", id="PUT=UPDATE"),
    pytest.param("PATCH", OBJECT, None, "UPDATE", id="PATCH=UPDATE"),
    pytest.param("DELETE", OBJECT, None, "DELETE", id="DELETE=DELETE"),
    pytest.param("GET", ECHO, "LIST", "LIST", id="GET+LIST"),
    pytest.param("GET", OBJECT, "OPEN", "OPEN", id="GET+OPEN"),
    pytest.param("GET", ECHO, "INDEX", "INDEX", id="GET+INDEX-search"),
    pytest.param("GET", OBJECT, "INDEX", "INDEX", id="GET+INDEX-object"),
    pytest.param("GET", OBJECT, "DELETE", "DELETE", id="GET+DELETE"),
    pytest.param("POST", ECHO, "CREATE", "CREATE", id="POST+CREATE"),
    pytest.param("POST", OBJECT, "UPDATE", "UPDATE", id="POST+UPDATE"),
    pytest.param("POST", OBJECT, "RUN", "RUN", id="POST+RUN"),
    pytest.param("POST", OBJECT, "DELETE", "DELETE", id="POST+DELETE"),
    pytest.param("PUT", OBJECT, "UPDATE", "UPDATE", id="PUT+UPDATE"),
    pytest.param("PATCH", OBJECT, "UPDATE", "UPDATE", id="PATCH+UPDATE"),
    pytest.param("DELETE", OBJECT, "DELETE", "DELETE", id="DELETE+DELETE"),
    pytest.param("GET", OBJECT, "open", "OPEN", id="GET+open-lowercase"),
]

REFUSED_PAIRINGS = [
    pytest.param("GET", OBJECT, "CREATE", id="GET+CREATE"),
    pytest.param("GET", OBJECT, "UPDATE", id="GET+UPDATE"),
    pytest.param("GET", OBJECT, "RUN", id="GET+RUN"),
    pytest.param("POST", ECHO, "LIST", id="POST+LIST"),
    pytest.param("POST", OBJECT, "OPEN", id="POST+OPEN"),
    pytest.param("POST", OBJECT, "INDEX", id="POST+INDEX"),
    pytest.param("PUT", OBJECT, "RUN", id="PUT+RUN"),
    pytest.param("PUT", OBJECT, "DELETE", id="PUT+DELETE"),
    pytest.param("PATCH", ECHO, "CREATE", id="PATCH+CREATE"),
    pytest.param("DELETE", OBJECT, "OPEN", id="DELETE+OPEN"),
    pytest.param("OPTIONS", OBJECT, None, id="OPTIONS"),
    pytest.param("PROPFIND", OBJECT, None, id="PROPFIND"),
]


@pytest.mark.parametrize(("verb", "path", "header", "method"), VERB_MAPPING)
async def test_verb_and_method_header_map_to_method(
    echo_http: aiohttp.ClientSession, verb: str, path: str, header: str | None, method: str
) -> None:
    """Each verb, with or without Flow-Request-Method, reaches the endpoint as the mapped method."""
    headers = {"Flow-Request-Method": header} if header else {}
    body = BODY if verb in ("POST", "PUT", "PATCH") else None
    call = await echoed(echo_http, verb, path, headers=headers, json=body)
    assert call["method"] == method
    assert call["endpoint"] == "echo/call"


@pytest.mark.parametrize(("verb", "path", "header"), REFUSED_PAIRINGS)
async def test_other_pairings_answer_405(
    echo_http: aiohttp.ClientSession, verb: str, path: str, header: str | None
) -> None:
    """A verb that cannot carry the method (a GET never writes) answers 405 METHOD_NOT_SUPPORTED."""
    headers = {"Flow-Request-Method": header} if header else {}
    status, envelope = await fetch(echo_http, verb, path, headers=headers, json=BODY)
    assert status == 405
    assert envelope["errorcode"] == "METHOD_NOT_SUPPORTED"
    assert envelope["success"] is False


@pytest.mark.parametrize(("verb", "path", "header"), REFUSED_PAIRINGS)
async def test_a_405_says_which_verbs_the_path_allows(
    echo_http: aiohttp.ClientSession, verb: str, path: str, header: str | None
) -> None:
    """Every 405 carries Allow (RFC 9110 15.5.6): echo/call has all seven methods, so all five verbs."""
    headers = {"Flow-Request-Method": header} if header else {}
    async with echo_http.request(verb, path, headers=headers, json=BODY) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET, POST, PUT, PATCH, DELETE"


async def test_unknown_method_header_is_invalid_request(echo_http: aiohttp.ClientSession) -> None:
    """A Flow-Request-Method that names no method answers 400 INVALID_REQUEST."""
    status, envelope = await fetch(echo_http, "GET", OBJECT, headers={"Flow-Request-Method": "FETCH"})
    assert (status, envelope["errorcode"]) == (400, "INVALID_REQUEST")


PATHS = [
    pytest.param(ECHO, {}, "echo/call", None, id="trailing-slash=collection"),
    pytest.param(ECHO + "abc", {}, "echo/call", "abc", id="last-segment=objectid"),
    pytest.param("/api/echo/echo/deep/call/", {}, "echo/deep/call", None, id="deep-collection"),
    pytest.param("/api/echo/echo/deep/call/abc", {}, "echo/deep/call", "abc", id="deep-object"),
    pytest.param(ECHO + "a%2Fb%20c%3F", {}, "echo/call", "a/b c?", id="percent-decoded-objectid"),
    pytest.param("/api/echo/echo/call", {"Flow-Request-ObjectId": "h1"}, "echo/call", "h1", id="header-objectid"),
    pytest.param(ECHO, {"Flow-Request-ObjectId": "h2"}, "echo/call", "h2", id="header-objectid-trailing-slash"),
    pytest.param("/api/echo/echo/call?objectid=q1", {}, "echo/call", "q1", id="query-objectid"),
]


@pytest.mark.parametrize(("path", "headers", "endpoint", "objectid"), PATHS)
async def test_path_names_endpoint_and_objectid(
    echo_http: aiohttp.ClientSession, path: str, headers: dict[str, str], endpoint: str, objectid: str
) -> None:
    """The trailing '/' ends the endpoint; otherwise the last segment is the object id unless one is given."""
    call = await echoed(echo_http, "GET", path, headers=headers)
    assert (call["endpoint"], call["objectid"]) == (endpoint, objectid)
    assert call["method"] == ("LIST" if objectid is None else "OPEN")


NOT_ENDPOINTS = [
    pytest.param("/api/echo/echo/call", {}, id="no-slash-last-segment-is-objectid"),
    pytest.param(ECHO + "abc", {"Flow-Request-ObjectId": "h"}, id="objectid-given-whole-path-is-endpoint"),
    pytest.param("/api/inventory/echo/call/", {}, id="wrong-application"),
    pytest.param("/api/echo/", {}, id="application-only"),
    pytest.param("/api/", {}, id="nothing"),
    pytest.param("/api/nope/nope/thing/", {}, id="unknown"),
]


@pytest.mark.parametrize(("path", "headers"), NOT_ENDPOINTS)
async def test_paths_naming_no_endpoint_answer_404(
    echo_http: aiohttp.ClientSession, path: str, headers: dict[str, str]
) -> None:
    """A path that names no endpoint of its application answers 404 NO_SUCH_ENDPOINT."""
    status, envelope = await fetch(echo_http, "GET", path, headers=headers)
    assert (status, envelope["errorcode"]) == (404, "NO_SUCH_ENDPOINT")


async def test_query_string_twins_and_parameters(echo_http: aiohttp.ClientSession) -> None:
    """method, objectid, namespace and token travel in the query string; other keys are parameters."""
    query = {"method": "INDEX", "objectid": "o9", "namespace": "ns1", "token": "t", "limit": "5", "color": "red"}
    call = await echoed(echo_http, "GET", "/api/echo/echo/call", params=query)
    assert call["method"] == "INDEX"
    assert call["objectid"] == "o9"
    assert call["namespace"] == "ns1"
    assert call["parameters"] == {"limit": "5", "color": "red"}


async def test_headers_win_over_query_twins(echo_http: aiohttp.ClientSession) -> None:
    """When both are given, the Flow-* header wins over its query-string twin."""
    headers = {"Flow-Request-Namespace": "from-header", "Flow-Request-Method": "OPEN"}
    call = await echoed(echo_http, "GET", OBJECT, headers=headers, params={"namespace": "q", "method": "INDEX"})
    assert (call["namespace"], call["method"]) == ("from-header", "OPEN")


async def test_namespace_header_reaches_endpoint(echo_http: aiohttp.ClientSession) -> None:
    """Flow-Request-Namespace is the call's namespace; without it the namespace is empty."""
    call = await echoed(echo_http, "GET", OBJECT, headers={"Flow-Request-Namespace": "site-a"})
    assert call["namespace"] == "site-a"
    assert (await echoed(echo_http, "GET", OBJECT))["namespace"] == ""


BODIES: list[Any] = [
    pytest.param("POST", OBJECT, "RUN", None, None, id="RUN-without-body"),
    pytest.param("POST", OBJECT, "RUN", {"x": [1, 2]}, {"x": [1, 2]}, id="RUN-with-body"),
    pytest.param("PUT", OBJECT, None, {"a": {"b": None}}, {"a": {"b": None}}, id="UPDATE-body"),
    pytest.param("GET", OBJECT, None, {"ignored": True}, None, id="GET-body-ignored"),
]


@pytest.mark.parametrize(("verb", "path", "method", "body", "data"), BODIES)
async def test_body_is_data(
    echo_http: aiohttp.ClientSession, verb: str, path: str, method: str | None, body: Any, data: Any
) -> None:
    """The JSON body is the call's data; RUN may have none; methods without data ignore it."""
    headers = {"Flow-Request-Method": method} if method else {}
    call = await echoed(echo_http, verb, path, headers=headers, json=body)
    assert call["data"] == data


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer abc.def.ghi", id="bearer"),
        pytest.param("Basic " + base64.b64encode(b"alice:secret").decode(), id="basic"),
    ],
)
async def test_well_formed_credentials_pass_through(echo_http: aiohttp.ClientSession, authorization: str) -> None:
    """Well-formed Authorization headers reach the authenticator (which today lets everyone in)."""
    await echoed(echo_http, "GET", OBJECT, headers={"Authorization": authorization, "X-API-Key": "k"})


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic !!!", id="not-base64"),
        pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), id="no-colon"),
        pytest.param("Basic " + base64.b64encode(b"\xff:\xfe").decode(), id="not-utf8"),
    ],
)
async def test_malformed_basic_is_auth_failed(echo_http: aiohttp.ClientSession, authorization: str) -> None:
    """Malformed HTTP Basic credentials answer 401 AUTH_FAILED."""
    status, envelope = await fetch(echo_http, "GET", OBJECT, headers={"Authorization": authorization})
    assert (status, envelope["errorcode"]) == (401, "AUTH_FAILED")
