"""An application for the console's tests, ``lab``: ``lab/asset``, a collection whose schema
has the kinds of fields the console draws forms for (nullable, numbers, choices, lists)."""

from __future__ import annotations

from typing import Any

from flowbus import Application, Collection

__all__ = ["ASSET_SCHEMA", "create_app"]

ASSET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "owner": {"type": ["string", "null"]},
        "weight": {"type": "number"},
        "size": {"enum": ["small", "large"]},
        "labels": {"type": "array", "items": {"type": "string"}},
    },
}


def create_app() -> Application:
    """Build the ``lab`` application."""
    app = Application("lab", description="Things to draw forms for")
    app.add(Collection("lab/asset", schema=ASSET_SCHEMA, description="Assets of every kind of field"))
    return app
