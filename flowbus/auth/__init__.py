"""Authentication and authorization seams."""

from flowbus.auth.base import (
    ANONYMOUS,
    AllowAll,
    Authenticator,
    Authorizer,
    Credentials,
    Identity,
    OpenAuthenticator,
)

__all__ = [
    "ANONYMOUS",
    "AllowAll",
    "Authenticator",
    "Authorizer",
    "Credentials",
    "Identity",
    "OpenAuthenticator",
]
