"""The typed keys of the gateway's aiohttp application state."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.registry import Registry

__all__ = ["DISPATCHER", "REGISTRY", "SETTINGS", "TABLES", "Tables"]


@dataclass(slots=True)
class Tables:
    """What the gateway derives from the frozen registry once, at startup.

    Attributes:
        apps: endpoint name → application name.
        openapi: the encoded OpenAPI document.
    """

    apps: dict[str, str] = field(default_factory=dict)
    openapi: bytes = b""


DISPATCHER = web.AppKey("dispatcher", Dispatcher)
REGISTRY = web.AppKey("registry", Registry)
SETTINGS = web.AppKey("settings", Settings)
TABLES = web.AppKey("tables", Tables)
