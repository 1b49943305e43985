"""FlowBus: a websocket RPC message bus with an HTTP mirror.

This module exports the programming model an application needs.
"""

from flowbus.auth.base import Credentials, Identity
from flowbus.auth.engine import AuthEngine
from flowbus.auth.names import AUTH_APIKEYS, AUTH_COLLECTIONS, AUTH_ROLES, AUTH_TOKENS, AUTH_USERS
from flowbus.backplane import Event
from flowbus.endpoint import Application, Call, Collection, Endpoint, Services
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

__version__ = "0.1.0"

__all__ = [
    "AUTH_APIKEYS",
    "AUTH_COLLECTIONS",
    "AUTH_ROLES",
    "AUTH_TOKENS",
    "AUTH_USERS",
    "Application",
    "AuthEngine",
    "AuthFailed",
    "AuthRequired",
    "Call",
    "Collection",
    "Conflict",
    "Credentials",
    "DoesNotExist",
    "Endpoint",
    "Event",
    "FlowBusError",
    "Identity",
    "InternalError",
    "InvalidData",
    "InvalidRequest",
    "Method",
    "MethodNotSupported",
    "MissingObjectId",
    "NoSuchEndpoint",
    "Page",
    "PermissionDenied",
    "Query",
    "RateLimited",
    "Request",
    "Response",
    "Schema",
    "Services",
    "Timeout",
    "TooLarge",
    "Unavailable",
]
