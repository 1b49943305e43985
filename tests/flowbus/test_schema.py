"""Collection schemas: the compiled fast check never accepts what draft 2020-12 refuses."""

from __future__ import annotations

from typing import Any

import pytest

from flowbus.errors import InvalidData
from flowbus.schema import Schema

DEVICE = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 80},
        "site": {"type": "string", "format": "hostname"},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "kind": {"enum": ["switch", "router"]},
    },
    "additionalProperties": False,
}

VALID: list[dict[str, Any]] = [
    {"name": "core-1"},
    {"name": "core-1", "port": 22, "tags": ["a", "b"], "kind": "switch"},
    {"name": "core-1", "site": "not a hostname!"},  # formats are annotations, as in jsonschema
]
INVALID: list[tuple[dict[str, Any], str | None]] = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 21}, "name"),
    ({"name": "a", "port": 0}, "port"),
    ({"name": "a", "port": 1.5}, "port"),
    ({"name": "a", "tags": ["a", "a"]}, "tags"),
    ({"name": "a", "tags": [1]}, "tags.0"),
    ({"name": "a", "kind": "hub"}, "kind"),
    ({"name": "a", "colour": "red"}, None),  # additionalProperties: the message names no field
]


@pytest.mark.parametrize("data", VALID)
def test_valid_objects_pass_the_fast_check(data: dict[str, Any]) -> None:
    schema = Schema(DEVICE)
    assert schema.fast
    schema.validate(data)


@pytest.mark.parametrize(("data", "field"), INVALID)
def test_invalid_objects_are_refused_naming_the_field(data: dict[str, Any], field: str | None) -> None:
    with pytest.raises(InvalidData) as info:
        Schema(DEVICE).validate(data)
    assert info.value.field == field


def test_defaults_are_not_filled_in() -> None:
    data = {"name": "a"}
    Schema(DEVICE).validate(data)
    assert data == {"name": "a"}


@pytest.mark.parametrize(
    ("schema", "data"),
    [
        ({"properties": {"a": {"type": "array", "prefixItems": [{"type": "string"}]}}}, {"a": [1]}),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, {"a": 1}),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "unevaluatedProperties": False}, {"b": 1}),
        ({"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s", "minLength": 3}}}, {"a": "x"}),
    ],
    ids=["prefixItems", "dependentRequired", "unevaluatedProperties", "ref-with-siblings"],
)
def test_draft_specific_schemas_are_checked_exactly(schema: dict[str, Any], data: dict[str, Any]) -> None:
    """A schema whose meaning differs under draft 7 gets no fast check, so 2020-12 rules apply."""
    compiled = Schema({"type": "object", **schema})
    assert not compiled.fast
    with pytest.raises(InvalidData):
        compiled.validate(data)


def test_invalid_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid JSON Schema"):
        Schema({"type": "no-such-type"})
