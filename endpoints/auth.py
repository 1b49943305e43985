"""The ``auth`` application: logins and tokens, users, API keys and roles.

- ``auth/token``: CREATE ``{"username", "password"}`` (no token needed) answers a JWT; DELETE of
  a token id revokes it; RUN ``refresh`` answers a new token for the caller; LIST shows the
  caller's tokens (an admin's: everyone's).
- ``auth/user``: users, admin only. Passwords are write-only.
- ``auth/apikey``: CREATE answers the key once; LIST shows prefix, owner, created and last use.
- ``auth/role``: the built-in roles and roles defined as data.
"""

from __future__ import annotations

from typing import Any

from flowbus import (
    AUTH_APIKEYS,
    AUTH_ROLES,
    AUTH_TOKENS,
    AUTH_USERS,
    Application,
    AuthAdmin,
    Call,
    DoesNotExist,
    Endpoint,
    InvalidData,
    Method,
    Page,
    Query,
    Schema,
)

__all__ = ["APIKEY_SCHEMA", "ROLE_SCHEMA", "USER_SCHEMA", "ApiKeys", "Roles", "Tokens", "Users", "create_app"]

_HIDDEN = ("password_hash", "hash")
_STRINGS = {"type": "array", "items": {"type": "string"}}

USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string"},
        "password": {"type": "string"},
        "roles": _STRINGS,
        "namespaces": {"type": ["array", "null"], "items": {"type": "string"}},
        "disabled": {"type": "boolean"},
    },
}
"""The data of an ``auth/user`` CREATE or UPDATE (CREATE also needs ``username`` and ``password``)."""

APIKEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"owner": {"type": "string"}, "label": {"type": "string"}},
}
"""The data of an ``auth/apikey`` CREATE."""

ROLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["endpoints"],
                "properties": {
                    "endpoints": {"type": "string"},
                    "methods": _STRINGS,
                    "namespaces": {"type": ["array", "null"], "items": {"type": "string"}},
                    "deny": {"type": "boolean"},
                },
            },
        },
        "permissions": _STRINGS,
    },
}
"""The data of an ``auth/role`` CREATE or UPDATE; the bus's auth then checks names and method names."""

# Compiled once: the checks run before the bus's auth sees the data, so a wrong type is
# INVALID_DATA naming its field rather than an error deep inside it.
_USER, _APIKEY, _ROLE = Schema(USER_SCHEMA), Schema(APIKEY_SCHEMA), Schema(ROLE_SCHEMA)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _HIDDEN}


def _page(rows: list[dict[str, Any]], parameters: dict[str, Any]) -> Page:
    query = Query.from_parameters({k: v for k, v in parameters.items() if k in ("limit", "page", "offset")})
    return Page(rows[query.offset : query.offset + query.limit], query.limit, query.offset, len(rows))


def _strings(data: dict[str, Any], *names: str) -> list[str]:
    values = [data.get(name) for name in names]
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, str) or not value:
            raise InvalidData(f"'{name}' is required (a string)", field=name)
    return values  # type: ignore[return-value]


class Tokens(Endpoint):
    """Log in (CREATE), log out (DELETE), refresh (RUN ``refresh``), list own tokens."""

    description = "Tokens: CREATE with username and password to log in"
    public = frozenset({Method.CREATE})

    def __init__(self, auth: AuthAdmin) -> None:
        # The bus's auth is a component of the bus: it is started (its state loaded) before any
        # endpoint and stopped after them.
        super().__init__(AUTH_TOKENS)
        self.auth = auth

    async def create(self, call: Call) -> dict[str, Any]:
        username, password = _strings(call.object, "username", "password")
        identity = await self.auth.login(username, password, call.peer)
        return await self.auth.issue_token(identity)

    async def delete(self, call: Call) -> dict[str, Any]:
        assert call.objectid is not None
        return await self.auth.revoke_token(call.objectid, call.identity)

    async def run(self, call: Call) -> dict[str, Any]:
        if call.objectid != "refresh":
            raise DoesNotExist("The only operation of auth/token is 'refresh'")
        return await self.auth.issue_token(call.identity)

    async def list(self, call: Call) -> Page:
        rows = await self.auth.token_records()
        mine = [r for r in rows if self.auth.is_admin(call.identity) or r["username"] == call.identity.subject]
        return _page(mine, call.parameters)


class Users(Endpoint):
    """Users (admin only): ``{"username", "password", "roles", "namespaces", "disabled"}``."""

    description = "Users and their roles and namespaces"

    def __init__(self, auth: AuthAdmin) -> None:
        super().__init__(AUTH_USERS)
        self.auth = auth

    async def list(self, call: Call) -> Page:
        return _page([_public(u) for u in self.auth.users()], call.parameters)

    async def open(self, call: Call) -> dict[str, Any]:
        user = self.auth.user(call.objectid or "")
        if user is None:
            raise DoesNotExist()
        return _public(user)

    async def create(self, call: Call) -> dict[str, Any]:
        data = call.object
        _USER.validate(data)
        username, password = _strings(data, "username", "password")
        user = await self.auth.add_user(username, password, data.get("roles", ["viewer"]), data.get("namespaces"))
        return _public(user)

    async def update(self, call: Call) -> dict[str, Any]:
        data = call.object
        _USER.validate(data)
        return _public(await self.auth.change_user(call.objectid or "", data))

    async def delete(self, call: Call) -> dict[str, Any]:
        return _public(await self.auth.remove_user(call.objectid or ""))


class ApiKeys(Endpoint):
    """API keys: CREATE answers the key once; it is stored hashed."""

    description = "API keys (X-API-Key over HTTP, or the envelope token)"

    def __init__(self, auth: AuthAdmin) -> None:
        super().__init__(AUTH_APIKEYS)
        self.auth = auth

    async def create(self, call: Call) -> dict[str, Any]:
        data = call.object
        _APIKEY.validate(data)
        owner = data.get("owner") or call.identity.subject
        if owner != call.identity.subject and not self.auth.is_admin(call.identity):
            raise InvalidData("Only an admin may make keys for another user", field="owner")
        if self.auth.user(owner) is None:
            raise InvalidData(f"No user {owner!r}", field="owner")
        label = data.get("label", "")
        if not isinstance(label, str):
            raise InvalidData("'label' must be a string", field="label")
        key, record = await self.auth.add_apikey(owner, label)
        return {**self._show(record), "key": key}

    async def list(self, call: Call) -> Page:
        rows = [self._show(r) for r in await self.auth.apikey_records()]
        mine = [r for r in rows if self.auth.is_admin(call.identity) or r["owner"] == call.identity.subject]
        return _page(mine, call.parameters)

    async def delete(self, call: Call) -> dict[str, Any]:
        rows = await self.auth.apikey_records()
        record = next((r for r in rows if r["id"] == call.objectid), None)
        if record is None or (record["owner"] != call.identity.subject and not self.auth.is_admin(call.identity)):
            raise DoesNotExist("No such API key")
        return self._show(await self.auth.remove_apikey(record["id"]))

    def _show(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**_public(record), "last_used": self.auth.apikey_last_used(record["id"])}


class Roles(Endpoint):
    """Roles: the built-in ``admin``, ``operator`` and ``viewer``, and roles defined as data."""

    description = "Roles: rules {endpoints: glob, methods: [...], namespaces: [...]} and RUN permissions"

    def __init__(self, auth: AuthAdmin) -> None:
        super().__init__(AUTH_ROLES)
        self.auth = auth

    async def list(self, call: Call) -> Page:
        return _page(self.auth.roles(), call.parameters)

    async def open(self, call: Call) -> dict[str, Any]:
        role = self.auth.role(call.objectid or "")
        if role is None:
            raise DoesNotExist()
        return role

    async def create(self, call: Call) -> dict[str, Any]:
        data = call.object
        _ROLE.validate(data)
        return await self.auth.save_role(data, new=True)

    async def update(self, call: Call) -> dict[str, Any]:
        data = call.object
        _ROLE.validate(data)
        return await self.auth.save_role({**data, "id": call.objectid}, new=False)

    async def delete(self, call: Call) -> dict[str, Any]:
        return await self.auth.delete_role(call.objectid or "")


def create_app(auth: AuthAdmin) -> Application:
    """Build the auth application around the bus's auth (:class:`flowbus.AuthAdmin`)."""
    app = Application("auth", description="Authentication: tokens, users, API keys and roles")
    for endpoint in (Tokens(auth), Users(auth), ApiKeys(auth), Roles(auth)):
        app.add(endpoint)
    return app
