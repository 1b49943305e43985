"""The names of the auth collections (and of the endpoints that serve them), defined once, and
the shape of the names of users and roles."""

from __future__ import annotations

import re

__all__ = ["AUTH_APIKEYS", "AUTH_COLLECTIONS", "AUTH_ROLES", "AUTH_TOKENS", "AUTH_USERS", "NAME"]

AUTH_USERS = "auth/user"
AUTH_ROLES = "auth/role"
AUTH_APIKEYS = "auth/apikey"
AUTH_TOKENS = "auth/token"
AUTH_COLLECTIONS = (AUTH_USERS, AUTH_ROLES, AUTH_APIKEYS, AUTH_TOKENS)
"""Every collection the auth engine keeps in the store (namespace ``""``)."""
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
"""What a username or a role name looks like."""
