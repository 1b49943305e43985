"""The protocol core as pure functions: envelopes and parameters in, requests, queries and bytes out."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import pytest

from flowbus.errors import (
    DoesNotExist,
    FlowBusError,
    InvalidData,
    InvalidRequest,
    MissingObjectId,
    RateLimited,
)
from flowbus.params import DEFAULT_LIMIT, MAX_LIMIT, Query
from flowbus.protocol import (
    MAX_DEPTH,
    Method,
    Page,
    Request,
    Response,
    check_depth,
    encode_error,
    encode_response,
    encode_result,
    encode_stored,
    error_dict,
    may_be_too_deep,
    parse_method,
    parse_parameters,
    parse_request,
    response_dict,
    too_deep,
)

DEVICE = "inventory/device"


def parse(message: dict[str, Any] | str | bytes, **defaults: Any) -> Request:
    raw = json.dumps(message) if isinstance(message, dict) else message
    return parse_request(raw, **defaults)


def refused(message: dict[str, Any] | str | bytes, **defaults: Any) -> FlowBusError:
    with pytest.raises(FlowBusError) as info:
        parse(message, **defaults)
    return info.value


# -- a whole envelope ---------------------------------------------------------------------------


def test_full_envelope() -> None:
    """Every field of a valid envelope lands in the Request."""
    request = parse(
        {
            "method": "UPDATE",
            "endpoint": DEVICE,
            "objectid": "3a472a78",
            "token": "tok",
            "namespace": "site-1",
            "parameters": {"limit": 5},
            "data": {"name": "sw"},
            "requestid": "c-17",
            "unknown": [1, 2, 3],
        }
    )
    assert request == Request(
        method=Method.UPDATE,
        endpoint=DEVICE,
        objectid="3a472a78",
        token="tok",
        namespace="site-1",
        parameters={"limit": 5},
        data={"name": "sw"},
        requestid="c-17",
    )


def test_minimal_envelope_defaults() -> None:
    """A bare LIST gets no objectid, no token, the default namespace and empty parameters."""
    request = parse({"method": "LIST", "endpoint": DEVICE})
    assert request == Request(method=Method.LIST, endpoint=DEVICE)
    assert request.namespace == ""
    assert request.parameters == {}


def test_bytes_and_str_are_both_accepted() -> None:
    """The same envelope parses from str and from UTF-8 bytes."""
    text = '{"method": "LIST", "endpoint": "inventory/device", "data": {"name": "\u00e9"}}'
    assert parse_request(text) == parse_request(text.encode())


# -- method -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["OPEN", "open", "Open", "oPeN"], ids=["upper", "lower", "title", "mixed"])
def test_method_is_case_insensitive(spelling: str) -> None:
    """Any case of a method name reads as the method."""
    assert parse({"method": spelling, "endpoint": DEVICE, "objectid": "x"}).method is Method.OPEN


@pytest.mark.parametrize("method", list(Method), ids=[m.value for m in Method])
def test_parse_method_knows_all_seven(method: Method) -> None:
    """parse_method reads each of the seven methods in lower case."""
    assert parse_method(method.value.lower()) is method


@pytest.mark.parametrize(
    "value",
    [None, 1, ["LIST"], "", "GET", "LISTS", "SUBSCRIBE" * 10],
    ids=["none", "int", "list", "empty", "http-verb", "typo", "long"],
)
def test_parse_method_refuses(value: Any) -> None:
    """Anything but one of the seven names is INVALID_REQUEST, with a bounded message."""
    with pytest.raises(InvalidRequest) as info:
        parse_method(value)
    assert info.value.errorcode == "INVALID_REQUEST"
    assert len(info.value.message) < 200


def test_missing_method() -> None:
    """A message without a method is INVALID_REQUEST naming 'method'."""
    error = refused({"endpoint": DEVICE})
    assert error.errorcode == "INVALID_REQUEST"
    assert "method" in error.message


# -- endpoint -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["inventory/device", "/inventory/device", "inventory/device/", "/inventory/device/"],
    ids=["bare", "leading-slash", "trailing-slash", "both"],
)
def test_endpoint_slashes_are_stripped(endpoint: str) -> None:
    """An endpoint with or without a leading (or trailing) '/' names the same endpoint."""
    assert parse({"method": "LIST", "endpoint": endpoint}).endpoint == DEVICE


def test_default_endpoint_from_connection() -> None:
    """A message without an endpoint uses the connection's endpoint."""
    request = parse({"method": "LIST"}, default_endpoint=DEVICE)
    assert request.endpoint == DEVICE


def test_message_endpoint_wins_over_connection() -> None:
    """An endpoint in the message wins over the connection's."""
    request = parse({"method": "LIST", "endpoint": "/system/endpoint"}, default_endpoint=DEVICE)
    assert request.endpoint == "system/endpoint"


@pytest.mark.parametrize(
    "message",
    [{"method": "LIST"}, {"method": "LIST", "endpoint": ""}, {"method": "LIST", "endpoint": "/"}],
    ids=["absent", "empty", "only-slash"],
)
def test_endpoint_required_without_default(message: dict[str, Any]) -> None:
    """Without an endpoint in the message or the connection the call is INVALID_REQUEST."""
    error = refused(message)
    assert error.errorcode == "INVALID_REQUEST"
    assert "endpoint" in error.message


# -- token and namespace ------------------------------------------------------------------------


def test_default_token_from_connection() -> None:
    """A message without a token uses the connection's token."""
    assert parse({"method": "LIST", "endpoint": DEVICE}, default_token="conn").token == "conn"


def test_message_token_wins_over_connection() -> None:
    """A token in the message wins over the connection's."""
    assert parse({"method": "LIST", "endpoint": DEVICE, "token": "msg"}, default_token="conn").token == "msg"


@pytest.mark.parametrize("namespace", [None, ""], ids=["null", "empty"])
def test_namespace_defaults_to_empty(namespace: str | None) -> None:
    """An absent, null or empty namespace is the default namespace ''."""
    assert parse({"method": "LIST", "endpoint": DEVICE, "namespace": namespace}).namespace == ""


# -- field types --------------------------------------------------------------------------------

WRONG_TYPES = [
    ("method", 7),
    ("method", ["LIST"]),
    ("method", True),
    ("endpoint", 7),
    ("endpoint", ["inventory/device"]),
    ("endpoint", {"name": "x"}),
    ("objectid", 7),
    ("objectid", ["a"]),
    ("objectid", True),
    ("token", 7),
    ("token", {"jwt": "x"}),
    ("namespace", 7),
    ("namespace", ["a"]),
    ("parameters", 7),
    ("parameters", ["limit", 5]),
    ("parameters", True),
    ("data", "name=sw"),
    ("data", 7),
    ("requestid", 1.5),
    ("requestid", True),
    ("requestid", ["r"]),
    ("requestid", {"id": 1}),
]


@pytest.mark.parametrize(("name", "value"), WRONG_TYPES, ids=[f"{n}-{type(v).__name__}" for n, v in WRONG_TYPES])
def test_wrong_field_type(name: str, value: Any) -> None:
    """A field of the wrong type is INVALID_REQUEST whose message names the field."""
    message: dict[str, Any] = {"method": "UPDATE", "endpoint": DEVICE, "objectid": "x", "data": {"name": "sw"}}
    message[name] = value
    error = refused(message)
    assert type(error) is InvalidRequest
    assert name in error.message


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"not json", b"{", b'{"method": "LIST",}', b"\xff\xfe{}", b'{"a": NaN}', b'"\\ud800"'],
    ids=["empty", "blank", "text", "truncated", "trailing-comma", "bad-utf8", "nan", "lone-surrogate"],
)
def test_not_json(raw: bytes) -> None:
    """Anything that is not JSON (UTF-8) is INVALID_REQUEST."""
    assert refused(raw).errorcode == "INVALID_REQUEST"


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'[{"method": "LIST"}]', b'"LIST"', b"42", b"null", b"true"],
    ids=["array", "array-of-envelope", "string", "number", "null", "bool"],
)
def test_not_an_object(raw: bytes) -> None:
    """JSON that is not an object is INVALID_REQUEST saying so."""
    error = refused(raw)
    assert error.errorcode == "INVALID_REQUEST"
    assert "object" in error.message


CREATE_WITH_NUMBER = '{"method": "CREATE", "endpoint": "inventory/device", "data": {"name": "sw", "n": NUMBER}}'


@pytest.mark.parametrize(
    "number",
    ["18446744073709551616", "-9223372036854775809", "1" + "0" * 40, "-" + "9" * 30],
    ids=["2^64", "-2^63-1", "1e40-digits", "negative-30-digits"],
)
def test_integers_beyond_64_bits_are_refused(number: str) -> None:
    """An integer literal that does not fit 64 bits is INVALID_REQUEST (not silently made a float)."""
    raw = CREATE_WITH_NUMBER.replace("NUMBER", number)
    assert refused(raw).errorcode == "INVALID_REQUEST"


@pytest.mark.parametrize(
    "raw",
    [
        '{"method": "LIST", "endpoint": "inventory/device", "parameters": {"limit": 18446744073709551616}}',
        '{"method": "OPEN", "endpoint": "inventory/device", "objectid": "a", "requestid": 18446744073709551616}',
        '{"method": "OPEN", "endpoint": "inventory/device", "objectid": "a", "requestid": -9223372036854775809}',
    ],
    ids=["in-parameters", "requestid-2^64", "requestid-below-int64"],
)
def test_long_integers_outside_data_are_refused_too(raw: str) -> None:
    """Only data and parameters are searched for long integers; a requestid that orjson turned into
    a float is refused all the same, so no call goes on with a rounded number."""
    assert refused(raw).errorcode == "INVALID_REQUEST"


def test_an_open_with_a_long_digit_run_in_a_string_is_accepted() -> None:
    """Digits inside strings are not numbers: an objectid of 25 digits opens that object."""
    objectid = "1234567890123456789012345"
    assert parse({"method": "OPEN", "endpoint": "inventory/device", "objectid": objectid}).objectid == objectid


@pytest.mark.parametrize(
    "number",
    ["18446744073709551615", "-9223372036854775808", "1e300", "123456789012345678901234.5"],
    ids=["2^64-1", "-2^63", "float-exponent", "long-float"],
)
def test_numbers_that_fit_are_accepted(number: str) -> None:
    """64-bit integers and float literals are accepted, the integers exactly."""
    raw = CREATE_WITH_NUMBER.replace("NUMBER", number)
    data = parse(raw).data
    assert isinstance(data, dict)
    value = data["n"]
    assert value == json.loads(number)


def test_long_digit_strings_are_not_numbers() -> None:
    """Long runs of digits inside strings are just text."""
    digits = "1" * 64
    request = parse({"method": "CREATE", "endpoint": DEVICE, "data": {"name": digits}, "requestid": digits})
    assert request.data == {"name": digits}
    assert request.requestid == digits


def test_deep_nesting_is_refused() -> None:
    """10000 nested arrays are INVALID_REQUEST, not a crash."""
    raw = '{"method": "CREATE", "endpoint": "inventory/device", "data": {"name": %s}}' % ("[" * 10000 + "]" * 10000)
    assert refused(raw).errorcode == "INVALID_REQUEST"


# -- objectid and data --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["OPEN", "UPDATE", "DELETE", "RUN"])
@pytest.mark.parametrize("objectid", [None, ""], ids=["absent", "empty"])
def test_missing_objectid(method: str, objectid: str | None) -> None:
    """OPEN, UPDATE, DELETE and RUN without an objectid are MISSING_OBJECTID."""
    message: dict[str, Any] = {"method": method, "endpoint": DEVICE, "data": {"name": "sw"}}
    if objectid is not None:
        message["objectid"] = objectid
    error = refused(message)
    assert type(error) is MissingObjectId
    assert error.errorcode == "MISSING_OBJECTID"


@pytest.mark.parametrize("method", ["LIST", "CREATE", "INDEX"])
def test_objectid_optional(method: str) -> None:
    """LIST, CREATE and INDEX need no objectid."""
    assert parse({"method": method, "endpoint": DEVICE, "data": {}}).objectid is None


@pytest.mark.parametrize("method", ["CREATE", "UPDATE"])
def test_data_required(method: str) -> None:
    """CREATE and UPDATE without data are INVALID_REQUEST naming 'data'."""
    error = refused({"method": method, "endpoint": DEVICE, "objectid": "x"})
    assert type(error) is InvalidRequest
    assert "data" in error.message


def test_run_data_optional() -> None:
    """RUN takes data but does not need it."""
    assert parse({"method": "RUN", "endpoint": "testing/slow", "objectid": "x"}).data is None


# -- requestid ----------------------------------------------------------------------------------


@pytest.mark.parametrize("requestid", ["c-17", 17, 0, ""], ids=["string", "int", "zero", "empty-string"])
def test_requestid_kept(requestid: str | int) -> None:
    """A string or integer requestid is kept as given."""
    assert parse({"method": "LIST", "endpoint": DEVICE, "requestid": requestid}).requestid == requestid


ECHOED_ERRORS = [
    ({"method": "FETCH", "endpoint": DEVICE}, "INVALID_REQUEST"),
    ({"endpoint": DEVICE}, "INVALID_REQUEST"),
    ({"method": "OPEN", "endpoint": DEVICE}, "MISSING_OBJECTID"),
    ({"method": "LIST", "endpoint": 5}, "INVALID_REQUEST"),
    ({"method": "LIST"}, "INVALID_REQUEST"),
    ({"method": "CREATE", "endpoint": DEVICE, "data": "text"}, "INVALID_REQUEST"),
    ({"method": "LIST", "endpoint": DEVICE, "parameters": 5}, "INVALID_REQUEST"),
]


@pytest.mark.parametrize("requestid", ["r-1", 99], ids=["string", "int"])
@pytest.mark.parametrize(
    ("message", "errorcode"),
    ECHOED_ERRORS,
    ids=["unknown-method", "no-method", "no-objectid", "bad-endpoint", "no-endpoint", "bad-data", "bad-parameters"],
)
def test_requestid_echoed_on_errors(message: dict[str, Any], errorcode: str, requestid: str | int) -> None:
    """An envelope refused after its requestid was read carries the requestid into its error envelope."""
    error = refused({**message, "requestid": requestid})
    assert error.errorcode == errorcode
    envelope = orjson.loads(encode_error(error))
    assert envelope["requestid"] == requestid
    assert envelope["errorcode"] == errorcode


@pytest.mark.parametrize("requestid", [True, 1.5, [1]], ids=["bool", "float", "list"])
def test_bad_requestid_not_echoed(requestid: Any) -> None:
    """A requestid of the wrong type is INVALID_REQUEST and is not echoed."""
    error = refused({"method": "LIST", "endpoint": DEVICE, "requestid": requestid})
    assert "requestid" in error.message
    assert "requestid" not in orjson.loads(encode_error(error))


# -- parameters ---------------------------------------------------------------------------------

PARAMETER_FORMS = [
    (None, {}),
    ("", {}),
    ({}, {}),
    ({"limit": 10, "page": 2}, {"limit": 10, "page": 2}),
    ("limit=10&page=2", {"limit": "10", "page": "2"}),
    ("?limit=10&page=2", {"limit": "10", "page": "2"}),
    ("name=a%20b&tag=x%2By&empty=", {"name": "a b", "tag": "x+y", "empty": ""}),
    ("name=a+b", {"name": "a b"}),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    PARAMETER_FORMS,
    ids=["none", "empty-string", "empty-object", "object", "query-string", "leading-question-mark", "escapes", "plus"],
)
def test_parse_parameters(value: Any, expected: dict[str, Any]) -> None:
    """Parameters given as an object or as a URL-encoded string read as the same dict."""
    assert parse_parameters(value) == expected


@pytest.mark.parametrize("value", [5, ["limit=5"], True, 1.5], ids=["int", "list", "bool", "float"])
def test_parse_parameters_refuses(value: Any) -> None:
    """Parameters of any other type are INVALID_REQUEST."""
    with pytest.raises(InvalidRequest):
        parse_parameters(value)


def test_object_and_string_parameters_mean_the_same_query() -> None:
    """'limit=10&page=2' and {"limit": 10, "page": 2} make the same query."""
    as_string = parse({"method": "LIST", "endpoint": DEVICE, "parameters": "limit=10&page=2&sort=-name"})
    as_object = parse({"method": "LIST", "endpoint": DEVICE, "parameters": {"limit": 10, "page": 2, "sort": "-name"}})
    assert Query.from_parameters(as_string.parameters) == Query.from_parameters(as_object.parameters)


# -- LIST parameters (params.Query) -------------------------------------------------------------


def test_query_defaults() -> None:
    """No parameters: limit 30, offset 0, no sort, no filters, no search."""
    assert Query.from_parameters({}) == Query(DEFAULT_LIMIT, 0, None, False, {}, None)
    assert DEFAULT_LIMIT == 30 and MAX_LIMIT == 1000


GOOD_PAGING = [
    ({"limit": 10}, 10, 0),
    ({"limit": "10"}, 10, 0),
    ({"limit": 1}, 1, 0),
    ({"limit": 1000}, 1000, 0),
    ({"limit": 10.0}, 10, 0),
    ({"limit": ""}, DEFAULT_LIMIT, 0),
    ({"limit": None}, DEFAULT_LIMIT, 0),
    ({"page": 2}, DEFAULT_LIMIT, 2 * DEFAULT_LIMIT),
    ({"limit": 10, "page": 3}, 10, 30),
    ({"limit": "10", "page": "3"}, 10, 30),
    ({"page": 0}, DEFAULT_LIMIT, 0),
    ({"offset": 7}, DEFAULT_LIMIT, 7),
    ({"offset": "7", "limit": "5"}, 5, 7),
    ({"offset": 7, "page": 3}, DEFAULT_LIMIT, 7),
]


@pytest.mark.parametrize(
    ("parameters", "limit", "offset"),
    GOOD_PAGING,
    ids=[
        "limit",
        "limit-string",
        "limit-min",
        "limit-max",
        "limit-integral-float",
        "limit-empty",
        "limit-null",
        "page",
        "page-with-limit",
        "page-strings",
        "page-zero",
        "offset",
        "offset-strings",
        "offset-wins-over-page",
    ],
)
def test_paging(parameters: dict[str, Any], limit: int, offset: int) -> None:
    """limit, page (0-based, times limit) and offset read as limit and offset."""
    query = Query.from_parameters(parameters)
    assert (query.limit, query.offset) == (limit, offset)


BAD_PAGING = [
    {"limit": 0},
    {"limit": 1001},
    {"limit": -1},
    {"limit": "ten"},
    {"limit": "1.5"},
    {"limit": 1.5},
    {"limit": True},
    {"limit": [10]},
    {"limit": {"n": 10}},
    {"limit": "1_0"},
    {"limit": " 10"},
    {"page": -1},
    {"page": "x"},
    {"page": 0.5},
    {"offset": -1},
    {"offset": "x"},
    {"offset": False},
    {"offset": 2**63},
    {"offset": str(2**64)},
    {"page": 2**62, "limit": 1000},
]


@pytest.mark.parametrize(
    "parameters",
    BAD_PAGING,
    ids=[
        "limit-zero",
        "limit-over-max",
        "limit-negative",
        "limit-word",
        "limit-decimal-string",
        "limit-fraction",
        "limit-bool",
        "limit-list",
        "limit-object",
        "limit-underscore",
        "limit-space",
        "page-negative",
        "page-word",
        "page-fraction",
        "offset-negative",
        "offset-word",
        "offset-bool",
        "offset-beyond-63-bits",
        "offset-string-beyond-64-bits",
        "page-times-limit-overflows",
    ],
)
def test_bad_paging(parameters: dict[str, Any]) -> None:
    """Bad limit, page or offset values are INVALID_REQUEST naming the parameter."""
    with pytest.raises(InvalidRequest) as info:
        Query.from_parameters(parameters)
    assert type(info.value) is InvalidRequest
    assert next(iter(parameters)) in info.value.message


@pytest.mark.parametrize(
    ("sort", "field", "descending"),
    [
        ("name", "name", False),
        ("-name", "name", True),
        ("+name", "name", False),
        ("created", "created", False),
        ("", None, False),
    ],
    ids=["ascending", "descending", "explicit-ascending", "meta-field", "empty"],
)
def test_sort(sort: str, field: str | None, descending: bool) -> None:
    """sort is a field name, '-' before it for descending."""
    query = Query.from_parameters({"sort": sort})
    assert (query.sort, query.descending) == (field, descending)


@pytest.mark.parametrize(
    "sort",
    ["na me", "a.b", "-", "name;drop", "x" * 65, 5, ["name"], "--name"],
    ids=["space", "dotted", "dash-only", "injection", "too-long", "int", "list", "double-dash"],
)
def test_bad_sort(sort: Any) -> None:
    """A sort that is not a (possibly '-'-prefixed) field name is INVALID_REQUEST."""
    with pytest.raises(InvalidRequest):
        Query.from_parameters({"sort": sort})


def test_filters_and_q() -> None:
    """Every non-reserved parameter is an exact filter; q is the search text."""
    query = Query.from_parameters({"limit": 5, "q": "core switch", "location": "lab", "port": 22, "sort": "name"})
    assert query.filters == {"location": "lab", "port": 22}
    assert query.q == "core switch"


@pytest.mark.parametrize("q", [5, ["a"], {"a": 1}], ids=["int", "list", "object"])
def test_bad_q(q: Any) -> None:
    """A q that is not a string is INVALID_REQUEST."""
    with pytest.raises(InvalidRequest):
        Query.from_parameters({"q": q})


def test_empty_q_is_no_search() -> None:
    """An empty q means no search terms."""
    assert Query.from_parameters({"q": ""}).q is None


@pytest.mark.parametrize(
    "name",
    ["", "a.b", "a b", "$where", "x" * 65, "1abc"],
    ids=["empty", "dotted", "space", "dollar", "too-long", "leading-digit"],
)
def test_bad_filter_name(name: str) -> None:
    """A filter whose name cannot be a top-level field is INVALID_REQUEST."""
    with pytest.raises(InvalidRequest):
        Query.from_parameters({name: "x"})


# -- encoding -----------------------------------------------------------------------------------


def test_encode_success() -> None:
    """A success envelope has status 0, success true, data, dataType JSON and the requestid."""
    envelope = orjson.loads(encode_response(Response(data={"id": "a"}, requestid="c-1")))
    assert envelope == {"status": 0, "success": True, "data": {"id": "a"}, "dataType": "JSON", "requestid": "c-1"}


def test_encode_success_without_requestid() -> None:
    """Without a requestid the envelope has no requestid field; null data stays null."""
    envelope = orjson.loads(encode_response(Response(data=None)))
    assert envelope == {"status": 0, "success": True, "data": None, "dataType": "JSON"}


def test_encode_interim_status() -> None:
    """An interim (streamed) answer carries status 1."""
    assert orjson.loads(encode_response(Response(data={}, status=1, requestid=3)))["status"] == 1


def test_encode_page() -> None:
    """A page answers its items as data and limit/offset/total as page."""
    page = Page([{"id": "a"}, {"id": "b"}], limit=2, offset=4, total=123)
    envelope = orjson.loads(encode_response(Response(page=page, requestid=5)))
    assert envelope == {
        "status": 0,
        "success": True,
        "data": [{"id": "a"}, {"id": "b"}],
        "dataType": "JSON",
        "page": {"limit": 2, "offset": 4, "total": 123},
        "requestid": 5,
    }


def test_encode_error() -> None:
    """An error envelope has status 0, success false, message, errorcode, dataType, a UUID errorid and the requestid."""
    error = DoesNotExist()
    envelope = orjson.loads(encode_response(Response(error=error, requestid="c-17")))
    assert envelope.keys() == {"status", "success", "message", "errorcode", "dataType", "errorid", "requestid"}
    assert envelope["status"] == 0
    assert envelope["success"] is False
    assert envelope["message"] == "Object does not exist"
    assert envelope["errorcode"] == "DO_NOT_EXIST"
    assert envelope["dataType"] == "JSON"
    assert str(uuid.UUID(envelope["errorid"])) == envelope["errorid"]
    assert envelope["requestid"] == "c-17"


def test_errorid_is_fresh_per_error() -> None:
    """Two errors without an errorid get two different errorids; a given errorid is kept."""
    assert error_dict(InvalidData())["errorid"] != error_dict(InvalidData())["errorid"]
    assert error_dict(InvalidData(errorid="e-1"))["errorid"] == "e-1"


def test_error_requestid_from_argument_or_error() -> None:
    """The requestid comes from the argument, else from the error itself; none means no field."""
    error = InvalidRequest()
    assert "requestid" not in error_dict(error)
    error.requestid = "from-error"
    assert error_dict(error)["requestid"] == "from-error"
    assert error_dict(error, 7)["requestid"] == 7


def test_retry_after() -> None:
    """RATE_LIMITED carries retryAfter when the error knows it."""
    envelope = response_dict(Response(error=RateLimited(retry_after=2.5)))
    assert envelope["retryAfter"] == 2.5
    assert "retryAfter" not in response_dict(Response(error=RateLimited()))


def test_http_status_of_response() -> None:
    """A Response knows its HTTP status: 200 for success, the error's otherwise."""
    assert Response(data=1).http_status == 200
    assert Response(error=DoesNotExist()).http_status == 404
    assert Response(error=MissingObjectId()).http_status == 400


@pytest.mark.parametrize("requestid", [None, 0, -7, 2**63, "r-1", 'quote " and \\ and ü', ""])
def test_encode_stored_is_encode_result_of_the_object(requestid: str | int | None) -> None:
    """OPEN's fast path joins the stored bytes into the envelope: byte for byte what encoding the object gives."""
    stored = orjson.dumps({"id": "d1", "name": "sw ü", "n": [1, 2.5, None], "nested": {"a": True}})
    assert encode_stored(stored, requestid) == encode_result(orjson.loads(stored), requestid)


def deep_list(levels: int) -> str:
    """A JSON array nested ``levels`` deep (itself being level 1)."""
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [(1, 0, False), ([], 0, True), ([], 1, False), ({"a": [{}]}, 3, False), ({"a": [{}]}, 2, True)],
)
def test_too_deep(value: Any, limit: int, expected: bool) -> None:
    """too_deep counts arrays and objects alike, the value itself as level 1, scalars as nothing."""
    assert too_deep(value, limit) is expected


def test_check_depth_names_the_field() -> None:
    """check_depth names the field and the bound."""
    with pytest.raises(InvalidRequest, match=f"'data' is nested deeper than {MAX_DEPTH} levels"):
        check_depth(json.loads(deep_list(MAX_DEPTH + 1)), "data")
    check_depth(json.loads(deep_list(MAX_DEPTH)), "data")


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])
@pytest.mark.parametrize("name", ["data", "parameters"])
def test_parse_request_depth(as_bytes: bool, name: str) -> None:
    """data and parameters nested MAX_DEPTH deep are read; one level more is INVALID_REQUEST, keeping the requestid."""

    def message(levels: int) -> str | bytes:
        value = f'{{"x": {deep_list(levels - 1)}}}'
        text = f'{{"method": "LIST", "endpoint": "{DEVICE}", "requestid": 9, "{name}": {value}}}'
        return text.encode() if as_bytes else text

    assert parse_request(message(MAX_DEPTH)).method is Method.LIST
    with pytest.raises(InvalidRequest, match=f"'{name}' is nested deeper") as info:
        parse_request(message(MAX_DEPTH + 1))
    assert info.value.requestid == 9


def test_parse_request_many_shallow_brackets() -> None:
    """Many arrays side by side are read: the bracket count only decides whether to walk."""
    rows = ",".join(["[1]"] * 200)
    request = parse_request(f'{{"method": "CREATE", "endpoint": "{DEVICE}", "data": {{"rows": [{rows}]}}}}')
    assert isinstance(request.data, dict) and len(request.data["rows"]) == 200


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (deep_list(MAX_DEPTH - 1), False),
        (deep_list(MAX_DEPTH + 1), True),
        ('{"a": "' + "{" * MAX_DEPTH + '"}', True),
        (",".join(["[1]"] * MAX_DEPTH), True),
    ],
    ids=["too-few", "deep", "in-a-string", "side-by-side"],
)
@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])
def test_may_be_too_deep_counts_brackets(raw: str, expected: bool, as_bytes: bool) -> None:
    """The one bracket count before a depth walk: never no to a deep value, yes to some that are not."""
    assert may_be_too_deep(raw.encode() if as_bytes else raw) is expected
