"""The operations of the auth application: users, API keys and roles, logins and tokens.

:class:`Admin` is the bus's :class:`~flowbus.auth.base.AuthAdmin`, the one thing
``endpoints/auth.py`` is given. It checks what it is asked, writes the store, and updates the
auth state at once (the change feed brings the same change later, and to the other processes
sharing the store).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from typing import Any

from flowbus.auth.authenticator import UserAuthenticator
from flowbus.auth.authorizer import BUILTIN_ROLES, check_namespaces, describe_role, is_admin, role_from
from flowbus.auth.base import Identity
from flowbus.auth.names import AUTH_APIKEYS as APIKEYS, AUTH_ROLES as ROLES, AUTH_USERS as USERS, NAME
from flowbus.auth.state import REVOKING, AuthState, no_text, read_all
from flowbus.auth.token_service import TokenService
from flowbus.auth.tokens import hash_apikey, hash_password, new_apikey
from flowbus.errors import Conflict, DoesNotExist, InvalidData
from flowbus.timestamps import iso

__all__ = ["Admin"]


class Admin:
    """Manages users, API keys and roles, and logs users in and out.

    Args:
        state: the auth state it reads and updates.
        tokens: issues and revokes tokens.
        authenticator: checks logins.
    """

    def __init__(self, state: AuthState, tokens: TokenService, authenticator: UserAuthenticator) -> None:
        self.state = state
        self.tokens = tokens
        self.authenticator = authenticator

    # -- logins and tokens --------------------------------------------------------------------

    def is_admin(self, identity: Identity) -> bool:
        return is_admin(identity)

    async def login(self, username: str, password: str, peer: str) -> Identity:
        return await self.authenticator.login(username, password, peer)

    async def issue_token(self, identity: Identity) -> dict[str, Any]:
        return await self.tokens.issue(identity)

    async def revoke_token(self, token_id: str, by: Identity) -> dict[str, Any]:
        return await self.tokens.revoke(token_id, by)

    async def token_records(self) -> list[dict[str, Any]]:
        return await self.tokens.records()

    # -- users --------------------------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        return sorted(self.state.users.values(), key=lambda u: u["id"])

    def user(self, username: str) -> dict[str, Any] | None:
        return self.state.users.get(username)

    async def bootstrap(self, password: str | None) -> str | None:
        """On a store without users, create ``admin``; return the generated password if none was given."""
        if self.state.users:
            return None
        generated = None if password else secrets.token_urlsafe(18)
        await self.add_user("admin", password or generated or "", ["admin"])
        return generated

    async def add_user(
        self, username: str, password: str, roles: Iterable[str], namespaces: list[str] | None = None
    ) -> dict[str, Any]:
        """Create a user; raise Conflict if the name is taken, InvalidData for bad fields."""
        _check_username(username)
        if username in self.state.users:
            raise Conflict(f"User {username!r} exists")
        record = {
            "id": username,
            "username": username,
            "roles": self._check_roles(roles),
            "namespaces": check_namespaces(namespaces),
            "disabled": False,
            "password_hash": await _hash(password),
        }
        async with self.state.users_lock:
            stored = await self.state.store.insert(USERS, "", record, no_text)
            self.state.users[username] = stored
        return stored

    async def change_user(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a user's password, roles, namespaces or disabled flag."""
        if username not in self.state.users:
            raise DoesNotExist(f"No user {username!r}")
        patch: dict[str, Any] = {}
        if "password" in changes:
            patch["password_hash"] = await _hash(changes["password"])
        if "roles" in changes:
            patch["roles"] = self._check_roles(changes["roles"])
        if "namespaces" in changes:
            patch["namespaces"] = check_namespaces(changes["namespaces"])
        if "disabled" in changes:
            if not isinstance(changes["disabled"], bool):
                raise InvalidData("'disabled' must be true or false", field="disabled")
            patch["disabled"] = changes["disabled"]
        async with self.state.users_lock:
            stored = await self.state.store.patch(USERS, "", username, patch, no_text)
            self.state.users[username] = stored
        if patch.keys() & set(REVOKING):
            await self.tokens.revoke_user(username)
            self.state.identities_changed()
        return stored

    async def remove_user(self, username: str) -> dict[str, Any]:
        async with self.state.users_lock:
            removed = await self.state.store.delete(USERS, "", username)
            self.state.users.pop(username, None)
        await self.tokens.revoke_user(username)
        for prefix in [p for p, k in self.state.apikeys.items() if k["owner"] == username]:
            await self.remove_apikey(prefix)
        self.state.identities_changed()
        return removed

    def _check_roles(self, roles: Any) -> list[str]:
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidData("'roles' must be a list of role names", field="roles")
        unknown = [r for r in roles if r not in self.state.roles]
        if unknown:
            raise InvalidData(f"Unknown roles: {', '.join(unknown)}", field="roles")
        return list(roles)

    # -- API keys -----------------------------------------------------------------------------

    async def apikey_records(self) -> list[dict[str, Any]]:
        return await read_all(self.state.store, APIKEYS)

    async def add_apikey(self, owner: str, label: str = "") -> tuple[str, dict[str, Any]]:
        """Make an API key for ``owner``; return the key (shown once) and its stored record."""
        key, prefix = new_apikey()
        record = {"id": prefix, "prefix": prefix, "owner": owner, "label": label, "hash": hash_apikey(key)}
        stored = await self.state.store.insert(APIKEYS, "", record, no_text)
        self.state.apikeys[prefix] = {**stored, "last_used_at": None}
        return key, stored

    async def remove_apikey(self, prefix: str) -> dict[str, Any]:
        removed = await self.state.store.delete(APIKEYS, "", prefix)
        self.state.apikeys.pop(prefix, None)
        self.state.identities_changed(f"apikey:{prefix}")
        return removed

    def apikey_last_used(self, prefix: str) -> str | None:
        used = self.state.apikeys.get(prefix, {}).get("last_used_at")
        return iso(used) if used else None

    # -- roles --------------------------------------------------------------------------------

    def roles(self) -> list[dict[str, Any]]:
        return [describe_role(self.state.roles[name]) for name in sorted(self.state.roles)]

    def role(self, name: str) -> dict[str, Any] | None:
        role = self.state.roles.get(name)
        return describe_role(role) if role is not None else None

    async def save_role(self, raw: dict[str, Any], *, new: bool) -> dict[str, Any]:
        """Check, store and apply a role definition ``{"id", "rules", "permissions"}``."""
        name = raw.get("id")
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role")
        role = role_from(raw)
        record = {"rules": raw.get("rules", []), "permissions": raw.get("permissions", [])}
        if new:
            await self.state.store.insert(ROLES, "", {"id": role.name, **record}, no_text)
        else:
            await self.state.store.patch(ROLES, "", role.name, record, no_text)
        self.state.set_role(role)
        return describe_role(role)

    async def delete_role(self, name: str) -> dict[str, Any]:
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role")
        shown = self.role(name)
        await self.state.store.delete(ROLES, "", name)
        self.state.drop_role(name)
        return shown or {"id": name}


def _check_username(username: Any) -> None:
    if not isinstance(username, str) or not NAME.fullmatch(username):
        raise InvalidData("'username' must be 1-64 characters of [A-Za-z0-9._@-]", field="username")


async def _hash(password: Any) -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise InvalidData("'password' must be a string of at least 8 characters", field="password")
    return await asyncio.to_thread(hash_password, password)
