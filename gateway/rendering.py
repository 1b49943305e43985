"""A call's answer as HTTP: status, headers and a JSON or XML body.

A :class:`flowbus.protocol.Response` becomes ``(status, headers, body)`` (:func:`render`): a
CREATE's success is 201, an object's answer carries its version as ``ETag``, an error its HTTP
status (and ``Retry-After`` where it says when to try again), XML when ``Accept`` prefers it.
"""

from __future__ import annotations

import math
import re
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from flowbus.answers import internal_failure
from flowbus.protocol import (
    Method,
    Response,
    encode_response,
    encode_stored,
    response_dict,
)

__all__ = ["JSON_CONTENT_TYPE", "XML_CONTENT_TYPE", "is_xml", "render", "to_xml", "wants_xml"]

JSON_CONTENT_TYPE = "application/json"
XML_CONTENT_TYPE = "application/xml; charset=utf-8"
_ETAG_METHODS = frozenset({Method.OPEN, Method.CREATE, Method.UPDATE})
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
# Characters XML 1.0 cannot carry, even escaped.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def is_xml(content_type: str) -> bool:
    """Whether a media type (parameters allowed) is XML: ``application/xml``, ``text/xml``, ``*+xml``."""
    mime = content_type.partition(";")[0].strip().lower()
    return mime in ("application/xml", "text/xml") or mime.endswith("+xml")


def render(response: Response, accept: str, *, method: Method | None = None) -> tuple[int, dict[str, str], bytes]:
    """Render a response as HTTP.

    Args:
        response: the pipeline's answer.
        accept: the request's Accept header ("" if none).
        method: the call's method, if known: a CREATE's success answers 201; the answer of an
            OPEN, CREATE or UPDATE that carries one object with an integer ``version`` has
            ``ETag: "<version>"`` (from the cache or not).

    Returns:
        (status, headers, body)
    """
    if response.stored is not None and not (accept and wants_xml(accept)):
        # an object from the cache (a GET's usual answer): its stored JSON, joined as it is
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        if response.version is not None and method in _ETAG_METHODS:
            headers["ETag"] = f'"{response.version}"'
        return 200, headers, encode_stored(response.stored, response.requestid)
    try:
        return _render(response, accept, method)
    except TypeError:  # orjson: the endpoint answered something that is not JSON
        return _render(internal_failure("answer is not JSON", response.requestid), accept, None)


def _render(response: Response, accept: str, method: Method | None) -> tuple[int, dict[str, str], bytes]:
    created = method is Method.CREATE and response.error is None
    status = 201 if created else response.http_status
    headers: dict[str, str] = {}
    if method in _ETAG_METHODS and (version := response.object_version) is not None:
        headers["ETag"] = f'"{version}"'
    if response.error is not None and response.error.retry_after is not None:
        headers["Retry-After"] = str(max(0, math.ceil(response.error.retry_after)))
    if accept and wants_xml(accept):
        envelope = response_dict(response)
        headers["Content-Type"] = XML_CONTENT_TYPE
        envelope["dataType"] = "XML"  # the envelope says what its data is written in
        return status, headers, to_xml(envelope)
    headers["Content-Type"] = JSON_CONTENT_TYPE
    return status, headers, encode_response(response)


def wants_xml(accept: str) -> bool:
    """Whether an Accept header prefers XML to JSON (by q-value, then by order; JSON by default)."""
    if "xml" not in accept:
        return False
    best_xml = best_json = (-1.0, 0)
    for index, part in enumerate(accept.split(",")):
        mime, *params = part.split(";")
        mime = mime.strip().lower()
        rank = (_quality(params), -index)
        if is_xml(mime):
            best_xml = max(best_xml, rank)
        elif mime in ("application/json", "application/*", "*/*") or mime.endswith("+json"):
            best_json = max(best_json, rank)
    return best_xml[0] > 0 and best_xml > best_json


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def to_xml(envelope: dict[str, Any] | list[Any]) -> bytes:
    """Render an envelope as XML: root ``response``, one element per field (or, for a list,
    one ``item`` element per value).

    Lists are repeated ``item`` elements, booleans ``true``/``false``, null an empty element.
    A key that is not an XML name becomes ``<entry key="...">``.
    """
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<response>']
    if isinstance(envelope, list):
        for item in envelope:
            _xml_element("item", "", item, parts)
    else:
        _xml_fields(envelope, parts)
    parts.append("</response>")
    return "".join(parts).encode("utf-8")


def _xml_fields(obj: dict[str, Any], parts: list[str]) -> None:
    for key, value in obj.items():
        key = str(key)
        if _XML_NAME.fullmatch(key):
            _xml_element(key, "", value, parts)
        else:
            _xml_element("entry", f" key={quoteattr(_xml_text(key))}", value, parts)


def _xml_element(tag: str, attrs: str, value: Any, parts: list[str]) -> None:
    if value is None or value == [] or value == {}:
        parts.append(f"<{tag}{attrs}/>")
        return
    parts.append(f"<{tag}{attrs}>")
    if isinstance(value, dict):
        _xml_fields(value, parts)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _xml_element("item", "", item, parts)
    elif isinstance(value, bool):
        parts.append("true" if value else "false")
    else:
        parts.append(escape(_xml_text(str(value))))
    parts.append(f"</{tag}>")


def _xml_text(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)
