"""Authentication and authorization seams."""

from flowbus.auth.base import (
    ANONYMOUS,
    AllowAll,
    AuthAdmin,
    Authenticator,
    Authorizer,
    Credentials,
    Identity,
    OpenAuthenticator,
)

__all__ = [
    "ANONYMOUS",
    "AllowAll",
    "AuthAdmin",
    "Authenticator",
    "Authorizer",
    "Credentials",
    "Identity",
    "OpenAuthenticator",
]
