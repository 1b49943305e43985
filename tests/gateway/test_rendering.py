"""gateway.rendering: answers as HTTP status, headers and JSON or XML bodies."""

from __future__ import annotations

import orjson
import pytest
import xmltodict

from flowbus.errors import (
    DoesNotExist,
    RateLimited,
)
from flowbus.protocol import Method, Page, Response
from gateway.rendering import render, to_xml, wants_xml
from gateway.request import (
    parse_xml,
)

APPS = {"inventory/device": "inventory", "system/endpoint": "system", "a/b/c": "a"}


def test_render_json_success_and_created() -> None:
    """A success renders as the JSON envelope; a CREATE answers 201."""
    status, headers, body = render(Response(data={"id": "x"}), "", method=Method.CREATE)
    assert status == 201 and headers["Content-Type"] == "application/json"
    assert orjson.loads(body) == {"status": 0, "success": True, "data": {"id": "x"}, "dataType": "JSON"}
    assert render(Response(data={}), "application/json")[0] == 200


def test_render_error_status_and_retry_after() -> None:
    """An error renders with its HTTP status; a failed CREATE is not 201; retryAfter also as Retry-After."""
    status, _, body = render(Response(error=DoesNotExist(errorid="e1")), "", method=Method.CREATE)
    assert status == 404 and orjson.loads(body)["errorcode"] == "DO_NOT_EXIST"
    status, headers, _ = render(Response(error=RateLimited(retry_after=1.2)), "")
    assert status == 429 and headers["Retry-After"] == "2"


ACCEPTS = [
    pytest.param("", False, id="none"),
    pytest.param("*/*", False, id="any"),
    pytest.param("application/json", False, id="json"),
    pytest.param("application/xml", True, id="xml"),
    pytest.param("text/xml", True, id="text-xml"),
    pytest.param("text/html, application/xml;q=0.9, */*;q=0.8", True, id="browser"),
    pytest.param("application/json, application/xml", False, id="json-first"),
    pytest.param("application/xml, application/json", True, id="xml-first"),
    pytest.param("application/json;q=0.4, application/xml;q=0.6", True, id="xml-by-q"),
    pytest.param("application/xml;q=0", False, id="xml-refused"),
    pytest.param("application/xml;q=bad", False, id="bad-q"),
]


@pytest.mark.parametrize(("accept", "xml"), ACCEPTS)
def test_wants_xml(accept: str, xml: bool) -> None:
    """Accept prefers XML by quality, then order; JSON otherwise."""
    assert wants_xml(accept) is xml


def test_to_xml_renders_envelope() -> None:
    """Root 'response'; lists as <item>; booleans true/false; null empty; odd keys as <entry key>."""
    envelope = {
        "success": True,
        "data": {"tags": ["a", "<b>"], "up": False, "none": None, "n": 1.5, "bad key": "v", "nested": [[1]]},
    }
    text = to_xml(envelope).decode()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert "<tags><item>a</item><item>&lt;b&gt;</item></tags>" in text
    assert '<entry key="bad key">v</entry>' in text
    parsed = xmltodict.parse(text)["response"]
    assert parsed["success"] == "true" and parsed["data"]["up"] == "false" and parsed["data"]["none"] is None
    assert parsed["data"]["nested"] == {"item": {"item": "1"}}


def test_to_xml_replaces_characters_xml_cannot_carry() -> None:
    """Control characters XML 1.0 cannot carry are replaced, so the document stays well-formed."""
    text = to_xml({"data": "a\x00b\x1fc"})
    assert xmltodict.parse(text)["response"]["data"] == "a\ufffdb\ufffdc"


def test_to_xml_round_trips_through_parse_xml() -> None:
    """What to_xml writes, parse_xml reads back (as strings)."""
    data = {"name": "sw", "tags": ["a", "b"], "where": {"room": "1"}, "empty": None}
    assert parse_xml(to_xml(data)) == data


def test_object_version() -> None:
    """Only an answer of one object with an integer version has a version for its ETag."""
    assert Response(data={"id": "a", "version": 3}).object_version == 3
    assert Response(data={"id": "a"}).object_version is None
    assert Response(data={"version": "3"}).object_version is None
    assert Response(data={"version": True}).object_version is None
    assert Response(data=[{"version": 3}]).object_version is None
    assert Response(stored=b'{"id": "a", "version": 4}', version=4).object_version == 4


@pytest.mark.parametrize("accept", ["", "application/xml"])
def test_render_etag(accept: str) -> None:
    """OPEN, CREATE and UPDATE answers carry the version as a strong ETag; LIST, DELETE and errors do not."""
    data = {"id": "a", "version": 2}
    assert render(Response(data=data), accept, method=Method.OPEN)[1]["ETag"] == '"2"'
    assert render(Response(data=data), accept, method=Method.UPDATE)[1]["ETag"] == '"2"'
    assert render(Response(data=data), accept, method=Method.CREATE)[1]["ETag"] == '"2"'
    assert "ETag" not in render(Response(data=data), accept, method=Method.DELETE)[1]
    assert "ETag" not in render(Response(data=data), accept, method=Method.RUN)[1]
    assert "ETag" not in render(Response(data=data, page=Page([data], 1, 0, 1)), accept, method=Method.OPEN)[1]
    assert "ETag" not in render(Response(error=DoesNotExist()), accept, method=Method.OPEN)[1]
    assert render(Response(stored=b'{"id":"a","version":5}', version=5), accept, method=Method.OPEN)[1]["ETag"] == '"5"'
