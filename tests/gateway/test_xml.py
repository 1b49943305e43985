"""XML bodies in and XML envelopes out."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import xmltodict

from tests.gateway.helpers import DEVICES, ECHO, echoed, fetch

XML = {"Content-Type": "application/xml"}


async def fetch_xml(session: Any, verb: str, path: str, **kwargs: Any) -> tuple[int, str, str]:
    """Make a call asking for XML; return status, content type and body text."""
    headers = {"Accept": "application/xml", **kwargs.pop("headers", {})}
    async with session.request(verb, path, headers=headers, **kwargs) as response:
        return response.status, response.content_type, await response.text()


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml; charset=utf-8", "application/device+xml"])
async def test_xml_body_is_data(echo_http: aiohttp.ClientSession, content_type: str) -> None:
    """An XML body's root children (and attributes) become the data; <item> children a list."""
    body = '<?xml version="1.0"?><device kind="switch"><name>sw &amp; co</name><tags><item>a</item></tags></device>'
    call = await echoed(echo_http, "POST", ECHO, headers={"Content-Type": content_type}, data=body.encode())
    assert call["data"] == {"kind": "switch", "name": "sw & co", "tags": ["a"]}


async def test_xml_create_then_open_as_xml(http: aiohttp.ClientSession) -> None:
    """A device created from XML opens as an XML envelope with the same fields as the JSON one."""
    body = b"<device><name>xml-sw</name><tags><item>a</item><item>b</item></tags></device>"
    status, created = await fetch(http, "POST", DEVICES, headers=XML, data=body)
    assert status == 201 and created["data"]["tags"] == ["a", "b"]
    status, content_type, text = await fetch_xml(http, "GET", DEVICES + created["data"]["id"])
    assert (status, content_type) == (200, "application/xml")
    envelope = xmltodict.parse(text, force_list=("item",))["response"]
    assert envelope["success"] == "true" and envelope["status"] == "0"
    assert envelope["data"]["name"] == "xml-sw"
    assert envelope["data"]["tags"]["item"] == ["a", "b"]
    assert envelope["data"]["id"] == created["data"]["id"]


async def test_xml_error_envelope(http: aiohttp.ClientSession) -> None:
    """Errors answer as XML too, with the same status and fields."""
    status, _, text = await fetch_xml(http, "GET", DEVICES + "no-such-device")
    envelope = xmltodict.parse(text)["response"]
    assert status == 404
    assert envelope["success"] == "false" and envelope["errorcode"] == "DO_NOT_EXIST" and envelope["errorid"]


async def test_xml_list_renders_items(http: aiohttp.ClientSession) -> None:
    """A LIST answers its objects as repeated <item> elements, with page metadata."""
    status, _, text = await fetch_xml(http, "GET", DEVICES, params={"limit": "2"})
    envelope = xmltodict.parse(text, force_list=("item",))["response"]
    assert status == 200 and envelope["page"]["limit"] == "2"


@pytest.mark.parametrize(
    ("accept", "xml"),
    [
        pytest.param("text/xml", True, id="text-xml"),
        pytest.param("application/json;q=0.5, application/xml", True, id="xml-preferred-by-q"),
        pytest.param("application/json, application/xml", False, id="json-first"),
        pytest.param("*/*", False, id="anything"),
    ],
)
async def test_accept_negotiation(http: aiohttp.ClientSession, accept: str, xml: bool) -> None:
    """Accept chooses XML over JSON by quality, then order; JSON otherwise."""
    async with http.get(DEVICES, headers={"Accept": accept}) as response:
        assert (response.content_type == "application/xml") is xml
        text = await response.text()
    assert text.startswith("<?xml") is xml


REFUSED = [
    pytest.param(b'<!DOCTYPE d [<!ENTITY x "boom">]><d><name>&x;</name></d>', id="dtd-with-entity"),
    pytest.param(b'<!DOCTYPE d SYSTEM "http://example.invalid/d.dtd"><d><name>x</name></d>', id="external-dtd"),
    pytest.param(b"<d><name>x</name>", id="not-well-formed"),
    pytest.param(b"<d>just text</d>", id="root-without-fields"),
    pytest.param("<d><name>é</name></d>".encode("latin-1"), id="not-utf8"),
    pytest.param(b"not xml at all", id="not-xml"),
]


@pytest.mark.parametrize("body", REFUSED)
async def test_bad_xml_is_invalid_request(http: aiohttp.ClientSession, body: bytes) -> None:
    """DTDs, entity declarations and malformed XML answer 400 INVALID_REQUEST and store nothing."""
    status, envelope = await fetch(http, "POST", DEVICES, headers=XML, data=body)
    assert (status, envelope["errorcode"]) == (400, "INVALID_REQUEST")
