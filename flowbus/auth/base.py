"""Who is calling, and may they: the two questions the dispatcher asks on every call.

The dispatcher hands the caller's :class:`Credentials` to an :class:`Authenticator`, which
answers an :class:`Identity` (or raises AuthRequired / AuthFailed), then asks an
:class:`Authorizer` whether that identity may call ``method`` on ``endpoint`` in
``namespace`` (or raises PermissionDenied). Nothing else checks permissions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = [
    "ANONYMOUS",
    "NO_CREDENTIALS",
    "AllowAll",
    "AuthAdmin",
    "Authenticator",
    "Authorizer",
    "Credentials",
    "Identity",
    "OpenAuthenticator",
]


class Credentials(NamedTuple):
    """What a caller presented: a token (JWT or API key), HTTP Basic, or an API key header.

    ``peer`` is the client's address, for rate limiting and logs. Immutable; a named tuple
    rather than a frozen dataclass because every HTTP call makes one, and a tuple is made in
    half the time. Build it with keywords (``Credentials(token=..., peer=...)``): the order of
    the fields is not part of the programming model.
    """

    token: str | None = None
    username: str | None = None
    password: str | None = None
    apikey: str | None = None
    peer: str = ""

    @property
    def empty(self) -> bool:
        return not (self.token or self.username or self.apikey)

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        given = [name for name in ("token", "password", "apikey") if getattr(self, name)]
        return f"Credentials(username={self.username!r}, peer={self.peer!r}, given={given})"


NO_CREDENTIALS = Credentials()


@dataclass(slots=True, frozen=True)
class Identity:
    """An authenticated caller.

    Attributes:
        subject: a stable id of the caller (a username, or ``anonymous``).
        roles: the caller's role names.
        namespaces: the namespaces the caller is limited to; None means all.
    """

    subject: str
    roles: frozenset[str] = frozenset()
    namespaces: frozenset[str] | None = None


ANONYMOUS = Identity("anonymous")


class Authenticator(Protocol):
    """Turns credentials into an identity.

    :meth:`known` is the fast path the dispatcher asks first, on every call: the identity of
    credentials already verified (a token seen before, still valid), answered without waiting.
    An authenticator that keeps nothing answers None, and :meth:`authenticate` runs every time.
    """

    def known(self, credentials: Credentials) -> Identity | None:
        """The identity of credentials verified before and still valid, else None (then
        :meth:`authenticate` decides). Synchronous and quick: no I/O."""
        ...

    async def authenticate(self, credentials: Credentials) -> Identity:
        """Return the caller's identity.

        Raises:
            AuthRequired: no credentials were given and they are needed.
            AuthFailed: the credentials are wrong, tampered with, expired or revoked.
        """
        ...


class Authorizer(Protocol):
    """Decides whether an identity may call a method on an endpoint in a namespace."""

    def authorize(
        self, identity: Identity, method: str, endpoint: str, namespace: str, permission: str | None = None
    ) -> None:
        """Return if allowed. ``permission`` is the named permission a RUN operation requires, if any.

        Raises:
            PermissionDenied: the identity may not do this.
        """
        ...


class OpenAuthenticator:
    """Lets everyone in as :data:`ANONYMOUS` (the default until an engine is plugged in)."""

    def known(self, credentials: Credentials) -> Identity | None:
        """Everyone is known at once: as :data:`ANONYMOUS`."""
        return ANONYMOUS

    async def authenticate(self, credentials: Credentials) -> Identity:
        return ANONYMOUS


class AllowAll:
    """Allows every call."""

    def authorize(
        self, identity: Identity, method: str, endpoint: str, namespace: str, permission: str | None = None
    ) -> None:
        return None


class AuthAdmin(Protocol):
    """What the auth application (``auth/token``, ``auth/user``, ``auth/apikey``, ``auth/role``)
    asks of the bus's auth: logins and tokens, and users, API keys and roles.

    The bus's implementation keeps users, roles, keys and token records in the store; a change
    applies at once to the calls that follow, in every process sharing the store. Methods raise
    the FlowBusError their answer is (``InvalidData``, ``Conflict``, ``DoesNotExist``,
    ``AuthFailed``, ``RateLimited``). Records are the stored ones: password and key hashes
    included, for the application to leave out.
    """

    def is_admin(self, identity: Identity) -> bool:
        """Whether ``identity`` may act on other users' tokens and API keys."""
        ...

    async def login(self, username: str, password: str, peer: str) -> Identity:
        """The identity of a user whose password is right (failures from ``peer`` are throttled)."""
        ...

    async def issue_token(self, identity: Identity) -> dict[str, Any]:
        """A new token for ``identity``: ``{"token", "expires", "id"}``."""
        ...

    async def revoke_token(self, token_id: str, by: Identity) -> dict[str, Any]:
        """Revoke a token of ``by`` (an admin: anyone's); answers its record."""
        ...

    async def token_records(self) -> list[dict[str, Any]]:
        """Every token record (never the tokens themselves)."""
        ...

    def users(self) -> list[dict[str, Any]]:
        """Every user record, by username."""
        ...

    def user(self, username: str) -> dict[str, Any] | None:
        """The record of user ``username``, or None."""
        ...

    async def add_user(
        self, username: str, password: str, roles: Iterable[str], namespaces: list[str] | None = None
    ) -> dict[str, Any]:
        """Create a user; answers its record."""
        ...

    async def change_user(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a user's ``password``, ``roles``, ``namespaces`` or ``disabled``, revoking its
        tokens; answers its record."""
        ...

    async def remove_user(self, username: str) -> dict[str, Any]:
        """Delete a user, its tokens and its API keys; answers its last record."""
        ...

    async def apikey_records(self) -> list[dict[str, Any]]:
        """Every API key record (prefix, owner, label; the hash, never the key)."""
        ...

    async def add_apikey(self, owner: str, label: str = "") -> tuple[str, dict[str, Any]]:
        """Make an API key for ``owner``: the key (shown once) and its record."""
        ...

    async def remove_apikey(self, prefix: str) -> dict[str, Any]:
        """Revoke an API key by prefix; answers its record."""
        ...

    def apikey_last_used(self, prefix: str) -> str | None:
        """When an API key was last used (RFC 3339), or None if never."""
        ...

    def roles(self) -> list[dict[str, Any]]:
        """Every role as ``auth/role`` shows it, by name."""
        ...

    def role(self, name: str) -> dict[str, Any] | None:
        """Role ``name`` as ``auth/role`` shows it, or None."""
        ...

    async def save_role(self, raw: dict[str, Any], *, new: bool) -> dict[str, Any]:
        """Create (``new``) or replace a role ``{"id", "rules", "permissions"}``; answers it as shown."""
        ...

    async def delete_role(self, name: str) -> dict[str, Any]:
        """Delete a role defined as data; answers it as it was shown."""
        ...
