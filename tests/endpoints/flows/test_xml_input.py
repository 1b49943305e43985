"""Data read from XML (all text), read as the JSON Schema it is checked against asks."""

from __future__ import annotations

from typing import Any

import pytest

from endpoints.flows.xml_input import from_xml, is_xml

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "urgent": {"type": "boolean"},
        "code": {"type": "string"},
        "either": {"type": ["integer", "string"]},
        "maybe": {"type": ["integer", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "sizes": {"type": "array", "items": {"type": "integer"}},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]},
        "nested": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "additionalProperties": {"type": "boolean"},
        },
        "choice": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
    },
}


def test_text_becomes_what_the_schema_says() -> None:
    read = from_xml(
        {
            "count": "-12",
            "ratio": "2.5e1",
            "urgent": "true",
            "code": "007",
            "either": "5",
            "maybe": None,
            "sizes": {"size": ["1", "2"]},
            "pair": ["3", "0"],
            "nested": {"n": "+4", "flag": "false"},
            "choice": "1",
            "unknown": "9",
        },
        SCHEMA,
    )
    assert read == {
        "count": -12,
        "ratio": 25.0,
        "urgent": True,
        "code": "007",
        "either": "5",
        "maybe": None,
        "sizes": [1, 2],
        "pair": [3, False],
        "nested": {"n": 4, "flag": False},
        "choice": 1,
        "unknown": "9",
    }


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ({"tags": "one"}, {"tags": ["one"]}),
        ({"tags": None}, {"tags": []}),
        ({"code": None}, {"code": ""}),
        ({"nested": None}, {"nested": {}}),
        ({"ratio": "4"}, {"ratio": 4}),
        ({"urgent": "0"}, {"urgent": False}),
    ],
)
def test_what_xml_cannot_say(given: dict[str, Any], read: dict[str, Any]) -> None:
    assert from_xml(given, SCHEMA) == read


@pytest.mark.parametrize(
    "given",
    [
        {"count": "3.5"},
        {"count": "three"},
        {"count": "1" * 5000},
        {"ratio": "1e400"},
        {"ratio": "nan"},
        {"urgent": "yes"},
    ],
)
def test_what_does_not_read_is_left_for_the_schema_to_refuse(given: dict[str, Any]) -> None:
    assert from_xml(given, SCHEMA) == given


def test_without_a_schema_nothing_changes() -> None:
    assert from_xml({"count": "3"}, None) == {"count": "3"}
    assert from_xml({"count": "3"}, {"type": "object"}) == {"count": "3"}


def test_the_parameter() -> None:
    assert is_xml({"dataType": "XML"}) and is_xml({"dataType": "xml"})
    assert not is_xml({}) and not is_xml({"dataType": "JSON"}) and not is_xml({"dataType": ""})
    for bad in ("YAML", 1, ["XML"]):
        with pytest.raises(ValueError, match="dataType"):
            is_xml({"dataType": bad})
