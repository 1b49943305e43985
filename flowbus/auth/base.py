"""Who is calling, and may they: the two questions the dispatcher asks on every call.

The dispatcher hands the caller's :class:`Credentials` to an :class:`Authenticator`, which
answers an :class:`Identity` (or raises AuthRequired / AuthFailed), then asks an
:class:`Authorizer` whether that identity may call ``method`` on ``endpoint`` in
``namespace`` (or raises PermissionDenied). Nothing else checks permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "ANONYMOUS",
    "NO_CREDENTIALS",
    "AllowAll",
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
