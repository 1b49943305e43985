"""Validation of collection objects against their JSON Schema (draft 2020-12).

``jsonschema`` gives the exact verdict and a precise message, but takes about 10 µs for a small
object, on every write. Where a schema means the same under draft 7, it is also compiled to
Python code by ``fastjsonschema``, which accepts a valid object in about a tenth of that; only
an object the fast check refuses goes to ``jsonschema`` for the verdict and the message. A schema
with a keyword whose meaning differs between the drafts is checked by ``jsonschema`` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from flowbus.errors import InvalidData

__all__ = ["Schema"]

# Keywords new in 2019-09/2020-12, or read differently there than in draft 7.
_DRAFT_SPECIFIC = frozenset(
    {
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
        "$id",
        "$recursiveAnchor",
        "$recursiveRef",
        "$vocabulary",
        "contentSchema",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "maxContains",
        "minContains",
        "prefixItems",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)


class Schema:
    """A compiled JSON Schema.

    Raises:
        ValueError: the schema is not a valid draft 2020-12 schema.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"invalid JSON Schema: {exc.message}") from None
        self.schema = schema
        self._validator = Draft202012Validator(schema)
        self._fast = _fast_check(schema)

    @property
    def fast(self) -> bool:
        """Whether valid objects are accepted by the compiled check."""
        return self._fast is not None

    def validate(self, data: dict[str, Any]) -> None:
        """Raise InvalidData, naming the failing field, unless ``data`` is valid."""
        if self._fast is not None:
            try:
                self._fast(data)
                return
            except fastjsonschema.JsonSchemaException:
                pass  # jsonschema decides, and says why
        error = best_match(self._validator.iter_errors(data))
        if error is not None:
            field = _field(error)
            raise InvalidData(_describe(error, field), field=field)


def _fast_check(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    if _uses_draft_specific(schema):
        return None
    draft7 = {k: v for k, v in schema.items() if k != "$schema"}
    try:  # no defaults filled in, formats not asserted: as jsonschema does by default
        return fastjsonschema.compile(draft7, use_default=False, use_formats=False)
    except fastjsonschema.JsonSchemaDefinitionException:
        return None


def _uses_draft_specific(node: Any) -> bool:
    """Whether a keyword of ``_DRAFT_SPECIFIC``, or ``$ref`` beside other keywords, appears anywhere."""
    if isinstance(node, list):
        return any(_uses_draft_specific(item) for item in node)
    if not isinstance(node, dict):
        return False
    if not _DRAFT_SPECIFIC.isdisjoint(node) or ("$ref" in node and len(node) > 1):
        return True
    return any(_uses_draft_specific(value) for value in node.values())


def _field(error: ValidationError) -> str | None:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        required: list[str] = list(error.validator_value)  # type: ignore[arg-type]  # "required" holds a list
        missing = [p for p in required if p not in error.instance]
        path += missing[:1]
    return ".".join(path) or None


def _describe(error: ValidationError, field: str | None) -> str:
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"Field '{field}': {message}" if field else message
