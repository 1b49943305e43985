"""The caller's credentials from an HTTP request: a token, HTTP Basic or an API key.

``headers`` arguments must look up names case-insensitively (aiohttp's ``CIMultiDict`` does).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from multidict import istr

from flowbus.auth.base import Credentials
from flowbus.errors import (
    AuthFailed,
)

__all__ = ["TOKEN", "read_credentials", "token_only", "twin"]

# The names are istr: a case-insensitive multidict looks those up without case-folding them each time.
TOKEN = (istr("Flow-Auth-Token"), "token")
"""The token's header, and its query-string twin."""
_AUTHORIZATION = istr("Authorization")
_API_KEY = istr("X-API-Key")


def token_only(headers: Mapping[str, str]) -> bool:
    """Whether the request carries no credentials but (maybe) Flow-Auth-Token."""
    return _AUTHORIZATION not in headers and _API_KEY not in headers


def twin(headers: Mapping[str, str], query: Mapping[str, str], names: tuple[str, str]) -> str | None:
    """The value of a header, else of its query-string twin; empty counts as absent."""
    header, key = names
    return headers.get(header) or query.get(key) or None


def read_credentials(headers: Mapping[str, str], query: Mapping[str, str], peer: str = "") -> Credentials:
    """What the caller presented: a token, HTTP Basic, an API key.

    The token comes from Flow-Auth-Token, else the ``token`` query key, else
    ``Authorization: Bearer``.

    Raises:
        AuthFailed: ``Authorization: Basic`` that is not base64 of UTF-8 ``username:password``.
    """
    token = twin(headers, query, TOKEN)
    username = password = None
    authorization = headers.get(_AUTHORIZATION)
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            token = token or value.strip() or None
        elif scheme == "basic":
            username, password = _basic(value.strip())
    return Credentials(token, username, password, headers.get(_API_KEY) or None, peer)


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthFailed("Malformed HTTP Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise AuthFailed("Malformed HTTP Basic credentials: expected base64 of username:password")
    return username, password
