"""What the auth parts know of the store: users, roles, API keys and revoked tokens, kept current.

:class:`AuthState` reads the auth collections (namespace ``""``) once, when the bus starts, and
then follows their changes on the backplane, where the change feed publishes every change
committed to the store, by this process or by another one sharing it (``flowbus user``, a second
``flowbus serve``). Nothing rereads the store on a timer. The other parts answer calls from this
state without I/O, and hear from it when what they derived from it (identities they cached,
calls they allowed) may be stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flowbus.auth.authorizer import BUILTIN_ROLES, Role, role_from
from flowbus.auth.base import Identity
from flowbus.auth.names import AUTH_APIKEYS as APIKEYS, AUTH_ROLES as ROLES, AUTH_TOKENS as TOKENS, AUTH_USERS as USERS
from flowbus.auth.tokens import LEEWAY
from flowbus.backplane import Backplane, Event, token
from flowbus.errors import FlowBusError
from flowbus.params import Query
from flowbus.store.base import DELETED, Store
from flowbus.store.paging import every

__all__ = ["REVOKING", "AuthState", "no_text", "read_all", "user_identity"]

logger = logging.getLogger("flowbus.auth")

REVOKING = ("password_hash", "roles", "namespaces", "disabled")
"""Changing one of these fields of a user revokes the user's tokens."""


class AuthState:
    """Users, roles, API keys and the ids of revoked tokens, as the store holds them now.

    The dictionaries and the set are changed in place, never replaced: the parts that read them
    on every call may hold them directly.

    Args:
        store: where the auth collections live.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.users: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, Role] = dict(BUILTIN_ROLES)
        self.apikeys: dict[str, dict[str, Any]] = {}
        self.revoked: set[str] = set()
        # Held while user records are read from or written to the store and memory, so that
        # memory never ends up holding an older record than the store.
        self.users_lock = asyncio.Lock()
        self._identity_listeners: list[Callable[[str | None], None]] = []
        self._role_listeners: list[Callable[[], None]] = []
        self._held: list[tuple[Callable[[Event], None], Event]] | None = None

    # -- who hears of changes ------------------------------------------------------------------

    def listen(self, *, identities: Callable[[str | None], None], roles: Callable[[], None]) -> None:
        """Have ``identities`` called when identities derived from this state may be stale (with a
        credential's token id, or None for all of them), and ``roles`` when a role changed."""
        self._identity_listeners.append(identities)
        self._role_listeners.append(roles)

    def identities_changed(self, token_id: str | None = None) -> None:
        """Tell the listeners that identities (of ``token_id``, or all) may no longer hold."""
        for listener in self._identity_listeners:
            listener(token_id)

    def set_role(self, role: Role) -> None:
        self.roles[role.name] = role
        self._roles_changed()

    def drop_role(self, name: str) -> None:
        self.roles.pop(name, None)
        self._roles_changed()

    def _roles_changed(self) -> None:
        for listener in self._role_listeners:
            listener()
        self.identities_changed()

    # -- reading the store -------------------------------------------------------------------

    async def load(self) -> None:
        """Read users, roles and API keys from the store into memory (token revocations are the
        token service's to read, with the records it prunes)."""
        users = await read_all(self.store, USERS)
        self.users.update((u["id"], u) for u in users)
        for raw in await read_all(self.store, ROLES):
            self.roles[raw["id"]] = role_from(raw)
        apikeys = await read_all(self.store, APIKEYS)
        self.apikeys.update((k["prefix"], k) for k in apikeys)
        self._roles_changed()

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Hold back the changes that arrive while the block reads the store, then apply them in
        the order they came: a change committed during the reading is applied after it, whatever
        the reading saw, so none is lost."""
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for apply, event in held:
                apply(event)

    async def stored_user(self, username: str) -> dict[str, Any] | None:
        """The user record as the store holds it now (not as a cache may remember it)."""
        found, _ = await self.store.query(USERS, "", Query(limit=1, filters={"id": username}))
        return found[0] if found else None

    async def refresh_user(self, user: dict[str, Any]) -> None:
        """Remember ``user`` as stored (hold :attr:`users_lock`). If another process changed what
        revokes its tokens, it revoked them in the store: learn those revocations now, without
        waiting for their changes to arrive."""
        before = self.users.get(user["id"])
        self.users[user["id"]] = user
        if before is not None and any(before.get(k) != user.get(k) for k in REVOKING):
            records = await read_all(self.store, TOKENS, {"username": user["id"]})
            self.revoked.update(r["id"] for r in records if r.get("revoked"))
            self.identities_changed()

    def identity_of(self, subject: str) -> Identity | None:
        """The identity of user ``subject`` as it is now (roles, namespaces), or None if there is
        no such user: for work done later on a user's behalf (a flow's steps, a scheduled job)."""
        user = self.users.get(subject)
        return user_identity(user) if user is not None else None

    # -- following the change feed -----------------------------------------------------------

    def follow(self, backplane: Backplane) -> list[Callable[[], None]]:
        """Apply the changes to users, roles, token records and API keys published on
        ``backplane`` to memory; returns the unsubscribe functions."""
        appliers: dict[str, Callable[[Event], None]] = {
            USERS: self._user_changed,
            ROLES: self._role_changed,
            TOKENS: self._token_changed,
            APIKEYS: self._apikey_changed,
        }
        return [
            backplane.subscribe(f"{token('')}.{token(name)}.*", self._handler(apply))
            for name, apply in appliers.items()
        ]

    def _handler(self, apply: Callable[[Event], None]) -> Callable[[str, Event], None]:
        def handle(subject: str, event: Event) -> None:
            if self._held is not None:
                self._held.append((apply, event))
            else:
                apply(event)

        return handle

    def _user_changed(self, event: Event) -> None:
        before = self.users.get(event.objectid)
        if event.event == DELETED:
            if before is not None:
                self.users.pop(event.objectid, None)
                self.identities_changed()
            return
        if not isinstance(event.data, dict) or _older(event, before):
            return
        self.users[event.objectid] = event.data
        if before is None or any(before.get(k) != event.data.get(k) for k in REVOKING):
            self.identities_changed()

    def _role_changed(self, event: Event) -> None:
        name = event.objectid
        if event.event == DELETED:
            if name not in BUILTIN_ROLES:
                self.drop_role(name)
            return
        try:
            role = role_from(event.data if isinstance(event.data, dict) else {})
        except FlowBusError:
            logger.error("role %r as stored is not valid; kept as it was", name)
            return
        self.set_role(role)

    def _token_changed(self, event: Event) -> None:
        record = event.data if isinstance(event.data, dict) else {}
        usable = record.get("expires_at", 0) >= time.time() - LEEWAY
        # A deleted record of a usable token revokes it too: nothing may vouch for it any more.
        if (record.get("revoked") or event.event == DELETED) and usable:
            self.revoked.add(event.objectid)
        elif event.event == DELETED:
            self.revoked.discard(event.objectid)

    def _apikey_changed(self, event: Event) -> None:
        prefix = event.objectid
        if event.event == DELETED:
            if self.apikeys.pop(prefix, None) is not None:
                self.identities_changed(f"apikey:{prefix}")
            return
        if not isinstance(event.data, dict) or _older(event, self.apikeys.get(prefix)):
            return
        last_used = (self.apikeys.get(prefix) or {}).get("last_used_at")
        self.apikeys[prefix] = {**event.data, "last_used_at": last_used}


async def read_all(store: Store, collection: str, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every record of an auth collection (matching ``filters``), oldest first, read page after
    page by cursor (stable while others write)."""
    return await every(store, collection, "", filters, sort="created")


def user_identity(user: dict[str, Any]) -> Identity:
    """The identity of a user record as it is now."""
    return Identity(user["id"], frozenset(user.get("roles", [])), _frozen(user.get("namespaces")))


def _frozen(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _older(event: Event, known: dict[str, Any] | None) -> bool:
    """Whether ``event`` carries an older version of a record than the one in memory (this process
    wrote a newer one before the feed brought the change)."""
    if known is None or event.version is None:
        return False
    return bool(event.version < known.get("version", 0))


def no_text(obj: dict[str, Any]) -> str:
    """The search text of an auth record: none (they are never searched)."""
    return ""
