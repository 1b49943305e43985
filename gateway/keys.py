"""The typed keys of the gateway's aiohttp application state."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from flowbus.config import Settings
from flowbus.dispatcher import Dispatcher
from flowbus.handshake import Connections, Handshake
from flowbus.registry import Registry
from flowbus.session import Calls

__all__ = ["DISPATCHER", "REGISTRY", "SETTINGS", "SOCKETS", "TABLES", "Sockets", "Tables"]


@dataclass(slots=True, frozen=True)
class Tables:
    """What the gateway derives from the frozen registry once, when it is made.

    Attributes:
        apps: endpoint name → application name.
        openapi: the encoded OpenAPI document.
    """

    apps: Mapping[str, str]
    openapi: bytes


@dataclass(slots=True)
class Sockets:
    """The cap on websocket connections (shared with the websocket port), the websockets open on
    ``/ws`` and their running calls, and the event streams open."""

    connections: Connections
    handshake: Handshake
    open: set[web.WebSocketResponse] = field(default_factory=set)
    calls: Calls = field(default_factory=Calls)
    streams: set[asyncio.Event] = field(default_factory=set)
    """The event streams open (each ends when its event is set)."""


DISPATCHER = web.AppKey("dispatcher", Dispatcher)
REGISTRY = web.AppKey("registry", Registry)
SETTINGS = web.AppKey("settings", Settings)
SOCKETS = web.AppKey("sockets", Sockets)
TABLES = web.AppKey("tables", Tables)
