"""FlowBus: a websocket RPC message bus with an HTTP mirror.

This module exports the programming model an application needs.
"""

from flowbus.auth.base import AuthAdmin, Credentials, Identity
from flowbus.auth.names import AUTH_APIKEYS, AUTH_COLLECTIONS, AUTH_ROLES, AUTH_TOKENS, AUTH_USERS
from flowbus.backplane import Event, every_object
from flowbus.endpoint import (
    Application,
    Background,
    Call,
    Caller,
    Collection,
    Endpoint,
    Services,
    check_objectid,
    expected_version,
    new_objectid,
)
from flowbus.errors import (
    AuthFailed,
    AuthRequired,
    Conflict,
    DoesNotExist,
    FlowBusError,
    InternalError,
    InvalidData,
    InvalidRequest,
    MethodNotSupported,
    MissingObjectId,
    NoSuchEndpoint,
    PermissionDenied,
    RateLimited,
    Timeout,
    TooLarge,
    Unavailable,
)
from flowbus.params import Query
from flowbus.protocol import Method, Page, Request, Response
from flowbus.schema import Schema
from flowbus.store.base import Checked, Delete, Get, Insert, Patch, Store
from flowbus.store.paging import cursor_of, every
from flowbus.timestamps import iso, iso_ms, now_iso

__version__ = "0.1.0"

__all__ = [
    "AUTH_APIKEYS",
    "AUTH_COLLECTIONS",
    "AUTH_ROLES",
    "AUTH_TOKENS",
    "AUTH_USERS",
    "Application",
    "AuthAdmin",
    "AuthFailed",
    "AuthRequired",
    "Background",
    "Call",
    "Caller",
    "Checked",
    "Collection",
    "Conflict",
    "Credentials",
    "Delete",
    "DoesNotExist",
    "Endpoint",
    "Event",
    "FlowBusError",
    "Get",
    "Identity",
    "Insert",
    "InternalError",
    "InvalidData",
    "InvalidRequest",
    "Method",
    "MethodNotSupported",
    "MissingObjectId",
    "NoSuchEndpoint",
    "Page",
    "Patch",
    "PermissionDenied",
    "Query",
    "RateLimited",
    "Request",
    "Response",
    "Schema",
    "Services",
    "Store",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "check_objectid",
    "cursor_of",
    "every",
    "every_object",
    "expected_version",
    "iso",
    "iso_ms",
    "new_objectid",
    "now_iso",
]
