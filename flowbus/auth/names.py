"""The names of the auth collections (and of the endpoints that serve them), defined once."""

from __future__ import annotations

__all__ = ["AUTH_APIKEYS", "AUTH_COLLECTIONS", "AUTH_ROLES", "AUTH_TOKENS", "AUTH_USERS"]

AUTH_USERS = "auth/user"
AUTH_ROLES = "auth/role"
AUTH_APIKEYS = "auth/apikey"
AUTH_TOKENS = "auth/token"
AUTH_COLLECTIONS = (AUTH_USERS, AUTH_ROLES, AUTH_APIKEYS, AUTH_TOKENS)
"""Every collection the auth engine keeps in the store (namespace ``""``)."""
