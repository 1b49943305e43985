"""The ``inventory`` application: devices, a plain store-backed collection."""

from __future__ import annotations

from flowbus import Application, Collection

__all__ = ["DEVICE_SCHEMA", "create_app"]

DEVICE_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "description": {"type": "string"},
        "location": {"type": "string"},
        "address": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def create_app() -> Application:
    """Build the inventory application."""
    app = Application("inventory", description="Devices and what is known of them")
    app.add(
        Collection(
            "inventory/device",
            schema=DEVICE_SCHEMA,
            title="name",
            searchable=["name", "description", "location", "address"],
            description="Network devices",
        )
    )
    return app
