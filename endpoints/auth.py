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
    AuthEngine,
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
"""The data of an ``auth/role`` CREATE or UPDATE; the engine then checks names and method names."""

# Compiled once: the checks run before the engine sees the data, so a wrong type is INVALID_DATA
# naming its field rather than an error deep inside the engine.
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

    def __init__(self, engine: AuthEngine) -> None:
        # The engine is a component of the bus: it is started (its state loaded) before any
        # endpoint and stopped after them.
        super().__init__(AUTH_TOKENS)
        self.engine = engine

    async def create(self, call: Call) -> dict[str, Any]:
        username, password = _strings(call.object, "username", "password")
        identity = await self.engine.login(username, password, call.peer)
        return await self.engine.issue_token(identity)

    async def delete(self, call: Call) -> dict[str, Any]:
        assert call.objectid is not None
        return await self.engine.revoke_token(call.objectid, call.identity)

    async def run(self, call: Call) -> dict[str, Any]:
        if call.objectid != "refresh":
            raise DoesNotExist("The only operation of auth/token is 'refresh'")
        return await self.engine.issue_token(call.identity)

    async def list(self, call: Call) -> Page:
        rows = await self.engine.token_records()
        mine = [r for r in rows if self.engine.is_admin(call.identity) or r["username"] == call.identity.subject]
        return _page(mine, call.parameters)


class Users(Endpoint):
    """Users (admin only): ``{"username", "password", "roles", "namespaces", "disabled"}``."""

    description = "Users and their roles and namespaces"

    def __init__(self, engine: AuthEngine) -> None:
        super().__init__(AUTH_USERS)
        self.engine = engine

    async def list(self, call: Call) -> Page:
        return _page([_public(u) for u in sorted(self.engine.users.values(), key=lambda u: u["id"])], call.parameters)

    async def open(self, call: Call) -> dict[str, Any]:
        user = self.engine.users.get(call.objectid or "")
        if user is None:
            raise DoesNotExist()
        return _public(user)

    async def create(self, call: Call) -> dict[str, Any]:
        data = call.object
        _USER.validate(data)
        username, password = _strings(data, "username", "password")
        user = await self.engine.add_user(username, password, data.get("roles", ["viewer"]), data.get("namespaces"))
        return _public(user)

    async def update(self, call: Call) -> dict[str, Any]:
        data = call.object
        _USER.validate(data)
        return _public(await self.engine.change_user(call.objectid or "", data))

    async def delete(self, call: Call) -> dict[str, Any]:
        return _public(await self.engine.remove_user(call.objectid or ""))


class ApiKeys(Endpoint):
    """API keys: CREATE answers the key once; it is stored hashed."""

    description = "API keys (X-API-Key over HTTP, or the envelope token)"

    def __init__(self, engine: AuthEngine) -> None:
        super().__init__(AUTH_APIKEYS)
        self.engine = engine

    async def create(self, call: Call) -> dict[str, Any]:
        data = call.object
        _APIKEY.validate(data)
        owner = data.get("owner") or call.identity.subject
        if owner != call.identity.subject and not self.engine.is_admin(call.identity):
            raise InvalidData("Only an admin may make keys for another user", field="owner")
        if owner not in self.engine.users:
            raise InvalidData(f"No user {owner!r}", field="owner")
        label = data.get("label", "")
        if not isinstance(label, str):
            raise InvalidData("'label' must be a string", field="label")
        key, record = await self.engine.add_apikey(owner, label)
        return {**self._show(record), "key": key}

    async def list(self, call: Call) -> Page:
        rows = [self._show(r) for r in await self.engine.apikey_records()]
        mine = [r for r in rows if self.engine.is_admin(call.identity) or r["owner"] == call.identity.subject]
        return _page(mine, call.parameters)

    async def delete(self, call: Call) -> dict[str, Any]:
        rows = await self.engine.apikey_records()
        record = next((r for r in rows if r["id"] == call.objectid), None)
        if record is None or (record["owner"] != call.identity.subject and not self.engine.is_admin(call.identity)):
            raise DoesNotExist("No such API key")
        return self._show(await self.engine.remove_apikey(record["id"]))

    def _show(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**_public(record), "last_used": self.engine.apikey_last_used(record["id"])}


class Roles(Endpoint):
    """Roles: the built-in ``admin``, ``operator`` and ``viewer``, and roles defined as data."""

    description = "Roles: rules {endpoints: glob, methods: [...], namespaces: [...]} and RUN permissions"

    def __init__(self, engine: AuthEngine) -> None:
        super().__init__(AUTH_ROLES)
        self.engine = engine

    async def list(self, call: Call) -> Page:
        return _page([self.engine.describe_role(name) for name in sorted(self.engine.roles)], call.parameters)

    async def open(self, call: Call) -> dict[str, Any]:
        if call.objectid not in self.engine.roles:
            raise DoesNotExist()
        return self.engine.describe_role(call.objectid)

    async def create(self, call: Call) -> dict[str, Any]:
        data = call.object
        _ROLE.validate(data)
        return await self.engine.save_role(data, new=True)

    async def update(self, call: Call) -> dict[str, Any]:
        data = call.object
        _ROLE.validate(data)
        return await self.engine.save_role({**data, "id": call.objectid}, new=False)

    async def delete(self, call: Call) -> dict[str, Any]:
        return await self.engine.delete_role(call.objectid or "")


def create_app(engine: AuthEngine) -> Application:
    """Build the auth application around the bus's engine."""
    app = Application("auth", description="Authentication: tokens, users, API keys and roles")
    for endpoint in (Tokens(engine), Users(engine), ApiKeys(engine), Roles(engine)):
        app.add(endpoint)
    return app
