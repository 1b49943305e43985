"""Input that came from XML, made what the JSON Schema it is checked against says it is.

XML carries text only, and says a value is a list only by repeating its element: an XML body
turned into data (``<count>3</count><urgent>true</urgent>``) reads ``{"count": "3", "urgent":
"true"}``, which a schema of an integer and a boolean refuses. Where the schema is known (the
flow's ``input``, a USER_INPUT state's ``schema``) the text is read as the schema asks:

- ``integer``: decimal digits, with a sign; ``number``: a decimal number (also with an exponent);
  ``boolean``: ``true``, ``false``, ``1`` or ``0``; each only where the schema does not also
  allow a string (then the text stays as it is);
- ``array``: a single value becomes a list of one; an element that wraps its items
  (``<tags><tag>a</tag><tag>b</tag></tags>``) is its items;
- an empty element (null) is ``""`` for a string, ``[]`` for an array, ``{}`` for an object,
  unless the schema allows null.

The schema is followed through ``properties``, ``additionalProperties``, ``items``,
``prefixItems``, and the ``type`` of ``anyOf``/``oneOf`` alternatives; ``$ref`` is not followed.
A value that does not read as asked is left as it came: the schema's check then names it.
Nothing here refuses anything.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["from_xml", "is_xml"]

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
_EMPTY: dict[str, Any] = {"string": "", "array": [], "object": {}}
_MAX_DIGITS = 4300  # Python's own bound on the digits int() reads


def is_xml(parameters: dict[str, Any]) -> bool:
    """Whether a call says its ``data`` came from XML (``parameters.dataType``, XML or JSON).

    Raises:
        ValueError: ``dataType`` is neither.
    """
    value = parameters.get("dataType")
    if value is None or value == "":
        return False
    if isinstance(value, str) and value.upper() in ("XML", "JSON"):
        return value.upper() == "XML"
    raise ValueError("'dataType' must be XML or JSON: what 'data' was written in")


def from_xml(value: Any, schema: Any) -> Any:
    """``value`` (data read from XML) with its text read as ``schema`` asks (see the module)."""
    if not isinstance(schema, dict):
        return value
    types = _types(schema)
    if value is None:
        if "null" in types:
            return None
        return next((_EMPTY[kind] for kind in ("string", "array", "object") if kind in types), None)
    if "array" in types and isinstance(value, dict) and len(value) == 1 and "object" not in types:
        value = next(iter(value.values()))  # the element that wraps the items
    if "array" in types and not isinstance(value, list):
        value = [value]
    if isinstance(value, list):
        return _items(value, schema)
    if isinstance(value, dict):
        return _fields(value, schema)
    if isinstance(value, str) and "string" not in types:
        return _scalar(value, types)
    return value


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    found: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for alternative in schema.get(key) or ():
            if isinstance(alternative, dict):
                found |= _types(alternative)
    return found


def _fields(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    other = schema.get("additionalProperties")
    return {key: from_xml(item, properties.get(key, other)) for key, item in value.items()}


def _items(value: list[Any], schema: dict[str, Any]) -> list[Any]:
    prefix = schema.get("prefixItems")
    prefix = prefix if isinstance(prefix, list) else []
    items = schema.get("items")
    return [from_xml(item, prefix[i] if i < len(prefix) else items) for i, item in enumerate(value)]


def _scalar(text: str, types: set[str]) -> Any:
    if len(text) > _MAX_DIGITS:
        return text
    if types & {"integer", "number"} and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in types and _NUMBER.fullmatch(text) and math.isfinite(number := float(text)):
        return number
    if "boolean" in types and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    return text
