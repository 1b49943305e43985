"""The authentication engine: users, tokens, API keys, roles, namespaces and login throttling.

:class:`AuthEngine` is both the bus's Authenticator and its Authorizer. Users, roles, API keys
and token revocations are kept in the store (namespace ``""``) and mirrored in memory, so
checking a call needs no I/O: a verified token's identity is cached until it expires or is
revoked, and revocation is a set lookup on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import hmac
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowbus.auth.base import Credentials, Identity
from flowbus.auth.names import AUTH_APIKEYS as APIKEYS, AUTH_ROLES as ROLES, AUTH_TOKENS as TOKENS, AUTH_USERS as USERS
from flowbus.auth.tokens import (
    LEEWAY,
    Claims,
    TokenIssuer,
    hash_apikey,
    hash_password,
    new_apikey,
    split_apikey,
    verify_password,
)
from flowbus.backplane import Backplane, Event, token
from flowbus.errors import (
    AuthFailed,
    AuthRequired,
    Conflict,
    DoesNotExist,
    FlowBusError,
    InvalidData,
    PermissionDenied,
    RateLimited,
)
from flowbus.params import Query
from flowbus.store.base import DELETED, Patch, Store
from flowbus.timestamps import iso as _rfc3339

__all__ = ["BUILTIN_ROLES", "PRUNE_EVERY", "SYNC_EVERY", "AuthEngine", "LoginThrottle", "Role", "Rule"]

logger = logging.getLogger("flowbus.auth")

ALL_METHODS = ("LIST", "OPEN", "CREATE", "UPDATE", "DELETE", "INDEX", "RUN")
READ_METHODS = ("LIST", "OPEN", "INDEX")
_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_ADMIN_ONLY = (USERS, ROLES)
# Tokens and API keys are kept outside namespaces: a namespace-limited user still logs out,
# refreshes its token and manages its own API keys, in the default namespace.
_OUTSIDE_NAMESPACES = frozenset({TOKENS, APIKEYS})
# Changing one of these fields of a user revokes the user's tokens.
_REVOKING = ("password_hash", "roles", "namespaces", "disabled")
SYNC_EVERY = 2.0
"""Seconds between two looks at the store for users changed by another process (``flowbus user``)."""
PRUNE_EVERY = 3600.0
"""Seconds between two deletions of the records of expired tokens."""
_PRUNE_CHUNK = 1000


@dataclass(slots=True, frozen=True)
class Rule:
    """Allows (or, with ``deny``, forbids) ``methods`` on endpoints matching ``endpoints`` (a glob)
    in namespaces matching one of ``namespaces`` (globs; None means every namespace)."""

    endpoints: str
    methods: frozenset[str]
    namespaces: tuple[str, ...] | None = None
    deny: bool = False

    def matches(self, method: str, endpoint: str, namespace: str) -> bool:
        if method not in self.methods or not fnmatch.fnmatchcase(endpoint, self.endpoints):
            return False
        return self.namespaces is None or any(fnmatch.fnmatchcase(namespace, ns) for ns in self.namespaces)

    @classmethod
    def parse(cls, raw: Any) -> Rule:
        """Read a rule from its stored form; raise InvalidData if it is malformed."""
        if not isinstance(raw, dict) or not isinstance(raw.get("endpoints"), str):
            raise InvalidData("A rule is {endpoints: glob, methods: [...], namespaces: [...]}", field="rules")
        methods = raw.get("methods", list(ALL_METHODS))
        if not isinstance(methods, list) or not set(map(str.upper, methods)) <= set(ALL_METHODS) | {"*"}:
            raise InvalidData(f"Rule methods must be among {', '.join(ALL_METHODS)}", field="rules")
        upper = {m.upper() for m in methods}
        namespaces = raw.get("namespaces")
        if namespaces is not None and _check_namespaces(namespaces) is None:
            raise InvalidData("Rule namespaces must be a list of strings", field="rules")
        return cls(
            raw["endpoints"],
            frozenset(ALL_METHODS) if "*" in upper else frozenset(upper),
            None if namespaces is None else tuple(namespaces),
            bool(raw.get("deny", False)),
        )


@dataclass(slots=True, frozen=True)
class Role:
    """A named set of rules and of RUN permissions (globs) it grants."""

    name: str
    rules: tuple[Rule, ...]
    permissions: tuple[str, ...] = ()

    def allows(self, method: str, endpoint: str, namespace: str) -> bool | None:
        """True if a rule allows it, False if one denies it, None if no rule speaks of it."""
        allowed: bool | None = None
        for rule in self.rules:
            if rule.matches(method, endpoint, namespace):
                if rule.deny:
                    return False
                allowed = True
        return allowed

    def grants(self, permission: str) -> bool:
        return any(fnmatch.fnmatchcase(permission, granted) for granted in self.permissions)


_SELF_SERVICE = Rule(TOKENS, frozenset({"DELETE", "RUN"}))
BUILTIN_ROLES: dict[str, Role] = {
    "admin": Role("admin", (Rule("*", frozenset(ALL_METHODS)),), ("*",)),
    "operator": Role(
        "operator",
        (
            Rule("*", frozenset(ALL_METHODS)),
            *(Rule(e, frozenset(ALL_METHODS), deny=True) for e in _ADMIN_ONLY),
        ),
    ),
    "viewer": Role(
        "viewer",
        (
            Rule("*", frozenset(READ_METHODS)),
            _SELF_SERVICE,
            *(Rule(e, frozenset(ALL_METHODS), deny=True) for e in [*_ADMIN_ONLY, APIKEYS]),
        ),
    ),
}


class LoginThrottle:
    """Counts failed logins per username and per client address in a sliding window."""

    def __init__(self, per_user: int = 5, per_peer: int = 20, window: float = 60.0) -> None:
        self.limits = {"user": per_user, "peer": per_peer}
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def check(self, username: str, peer: str) -> None:
        """Raise RateLimited (with retry_after) if either key has failed too often lately."""
        now = time.monotonic()
        for key in (("user", username), ("peer", peer)):
            failures = self._recent(key, now)
            if len(failures) >= self.limits[key[0]]:
                wait = max(1, int(failures[0] + self.window - now) + 1)
                raise RateLimited(f"Too many failed logins; retry after {wait} s", retry_after=wait)

    def failed(self, username: str, peer: str) -> None:
        now = time.monotonic()
        for key in (("user", username), ("peer", peer)):
            self._recent(key, now).append(now)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures


@dataclass(slots=True)
class _Cached:
    identity: Identity
    token_id: str | None
    expires: float


@dataclass
class AuthEngine:
    """Authenticates credentials and authorizes calls; keeps users, roles, keys and revocations.

    Args:
        store: where users, roles, API keys and token records live.
        issuer: signs and verifies JWTs.
        throttle: failed-login limits.
        admin_password: the password of the ``admin`` created on an empty store; None to generate one.
        backplane: where the change feed publishes the store's changes; while started, the engine
            follows the auth collections' changes there (made by this process or another one
            sharing the store: ``flowbus user``, a second ``flowbus serve``).

    As a component of the bus, :meth:`start` loads its state and creates ``admin`` if needed, then
    runs its timers (saving API-key use, pruning token records) until :meth:`stop`.
    """

    name: ClassVar[str] = "auth"
    store: Store
    issuer: TokenIssuer
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    admin_password: str | None = field(default=None, repr=False)
    backplane: Backplane | None = None
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=lambda: dict(BUILTIN_ROLES))
    _apikeys: dict[str, dict[str, Any]] = field(default_factory=dict)
    _revoked: set[str] = field(default_factory=set)
    _used: set[str] = field(default_factory=set)  # API keys used since their last use was saved
    _cache: dict[str, _Cached] = field(default_factory=dict)
    # The calls authorize() has allowed, by (roles, namespaces, method, endpoint, namespace,
    # permission): a repeated call is one set lookup. Emptied whenever a role changes.
    _allowed: set[tuple[Any, ...]] = field(default_factory=set)
    # Held while user records are read from or written to the store and memory, so that
    # memory never ends up holding an older record than the store.
    _users_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    generated_password: str | None = field(default=None, repr=False)
    _timers: asyncio.Task[None] | None = field(default=None, repr=False)
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list, repr=False)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load users, roles, keys and revocations, create ``admin`` on an empty store, start the timers."""
        if self.backplane is not None:
            # Subscribed before loading: a change committed meanwhile is applied twice, never missed.
            self._unsubscribe = self.follow(self.backplane)
        await self.load()
        await self.bootstrap(self.admin_password)
        self._timers = asyncio.create_task(self.watch(), name="auth timers")

    async def stop(self) -> None:
        """Stop following changes and the timers; save when API keys were last used."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._timers is not None:
            self._timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timers
            self._timers = None
        await self.save_apikey_use()

    def follow(self, backplane: Backplane) -> list[Callable[[], None]]:
        """Apply the changes to users, roles, token records and API keys published on ``backplane``
        to memory; returns the unsubscribe functions."""
        handlers = {
            USERS: self._user_changed,
            ROLES: self._role_changed,
            TOKENS: self._token_changed,
            APIKEYS: self._apikey_changed,
        }
        return [backplane.subscribe(f"{token('')}.{token(name)}.*", handler) for name, handler in handlers.items()]

    def _user_changed(self, subject: str, event: Event) -> None:
        before = self.users.get(event.objectid)
        if event.event == DELETED:
            if before is not None:
                self.users.pop(event.objectid, None)
                self._cache.clear()
            return
        if not isinstance(event.data, dict) or _older(event, before):
            return
        self.users[event.objectid] = event.data
        if before is None or any(before.get(k) != event.data.get(k) for k in _REVOKING):
            self._cache.clear()

    def _role_changed(self, subject: str, event: Event) -> None:
        name = event.objectid
        if event.event == DELETED:
            if name in BUILTIN_ROLES:
                return
            self.roles.pop(name, None)
        else:
            try:
                self.roles[name] = _role_from(event.data if isinstance(event.data, dict) else {})
            except FlowBusError:
                logger.error("role %r as stored is not valid; kept as it was", name)
                return
        self._allowed.clear()
        self._cache.clear()

    def _token_changed(self, subject: str, event: Event) -> None:
        record = event.data if isinstance(event.data, dict) else {}
        usable = record.get("expires_at", 0) >= time.time() - LEEWAY
        # A deleted record of a usable token revokes it too: nothing may vouch for it any more.
        if (record.get("revoked") or event.event == DELETED) and usable:
            self._revoked.add(event.objectid)
        elif event.event == DELETED:
            self._revoked.discard(event.objectid)

    def _apikey_changed(self, subject: str, event: Event) -> None:
        prefix = event.objectid
        if event.event == DELETED:
            if self._apikeys.pop(prefix, None) is not None:
                self._cache = {k: v for k, v in self._cache.items() if v.token_id != f"apikey:{prefix}"}
            return
        if not isinstance(event.data, dict) or _older(event, self._apikeys.get(prefix)):
            return
        last_used = (self._apikeys.get(prefix) or {}).get("last_used_at")
        self._apikeys[prefix] = {**event.data, "last_used_at": last_used}

    # -- startup ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Read users, roles, API keys and revocations from the store into memory (deleting the
        records of expired tokens on the way)."""
        self.users = {u["id"]: u for u in await self._all(USERS)}
        for raw in await self._all(ROLES):
            self.roles[raw["id"]] = _role_from(raw)
        self._allowed.clear()
        self._apikeys = {k["prefix"]: k for k in await self._all(APIKEYS)}
        live = await self.prune_tokens()
        self._revoked = {t["id"] for t in live if t.get("revoked")}

    async def prune_tokens(self) -> list[dict[str, Any]]:
        """Delete the records of tokens that can no longer be used (expired, leeway included) and
        forget their revocations; return the records kept.

        Every login adds a record: without this, the table (and what :meth:`load` and
        :meth:`revoke_user_tokens` read) would grow for as long as the bus is used.
        """
        cutoff = time.time() - LEEWAY
        live: list[dict[str, Any]] = []
        expired: list[str] = []
        for record in await self._all(TOKENS):
            if record["expires_at"] >= cutoff:
                live.append(record)
            else:
                expired.append(record["id"])
        self._revoked.difference_update(expired)
        # A chunk's deletes are queued together and share commits; one another process made
        # first (DoesNotExist) is done already.
        for start in range(0, len(expired), _PRUNE_CHUNK):
            chunk = expired[start : start + _PRUNE_CHUNK]
            done = await asyncio.gather(*(self.store.delete(TOKENS, "", i) for i in chunk), return_exceptions=True)
            failed = [e for e in done if isinstance(e, BaseException) and not isinstance(e, DoesNotExist)]
            if failed:
                raise failed[0]
        return live

    async def bootstrap(self, password: str | None) -> str | None:
        """On an empty store, create ``admin``; return the generated password if none was given."""
        if self.users:
            return None
        generated = None if password else secrets.token_urlsafe(18)
        await self.add_user("admin", password or generated or "", ["admin"])
        self.generated_password = generated
        return generated

    async def sync(self) -> None:
        """Catch up with users added or changed in the store by another process (``flowbus user``
        while the bus runs), and with the token revocations such a change made."""
        async with self._users_lock:
            for user in await self._all(USERS):
                await self._known(user)

    async def watch(self, every: float = SYNC_EVERY, prune_every: float = PRUNE_EVERY) -> None:
        """Run :meth:`sync` every ``every`` seconds and :meth:`prune_tokens` every ``prune_every``
        seconds, until cancelled."""
        pruned = time.monotonic()
        while True:
            await asyncio.sleep(every)
            try:
                await self.sync()
            except Exception:
                logger.error("could not read the users from the store", exc_info=True)
            try:
                await self.save_apikey_use()
            except Exception:
                logger.error("could not save when API keys were last used", exc_info=True)
            if time.monotonic() - pruned >= prune_every:
                pruned = time.monotonic()
                try:
                    await self.prune_tokens()
                except Exception:
                    logger.error("could not delete the records of expired tokens", exc_info=True)

    async def _known(self, user: dict[str, Any]) -> None:
        """Remember ``user`` as stored (hold ``_users_lock``). If another process changed what
        revokes its tokens, it revoked them in the store: learn those revocations."""
        before = self.users.get(user["id"])
        self.users[user["id"]] = user
        if before is not None and any(before.get(k) != user.get(k) for k in _REVOKING):
            records = await self._all(TOKENS, {"username": user["id"]})
            self._revoked.update(r["id"] for r in records if r.get("revoked"))
            self._cache.clear()

    async def _stored_user(self, username: str) -> dict[str, Any] | None:
        found, _ = await self.store.query(USERS, "", Query(limit=1, filters={"id": username}))
        return found[0] if found else None

    async def _all(self, collection: str, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            query = Query(limit=1000, offset=len(out), filters=filters or {})
            page, total = await self.store.query(collection, "", query)
            out.extend(page)
            if not page or len(out) >= total:
                return out

    # -- Authenticator ------------------------------------------------------------------------

    def identity_of(self, subject: str) -> Identity | None:
        """The identity of user ``subject`` as it is now (roles, namespaces), or None if there is
        no such user: for work done later on a user's behalf (a flow's steps, a scheduled job)."""
        user = self.users.get(subject)
        return _identity(user) if user is not None else None

    def known(self, credentials: Credentials) -> Identity | None:
        """The identity of a token or API key verified before, unexpired and not revoked, else None."""
        key = credentials.token or credentials.apikey
        cached = self._cache.get(key) if key else None
        if cached is not None and cached.expires > time.time() and cached.token_id not in self._revoked:
            return cached.identity
        return None

    async def authenticate(self, credentials: Credentials) -> Identity:
        token = credentials.token or credentials.apikey
        if token:
            identity = self.known(credentials)
            return identity if identity is not None else self._from_token(token)
        if credentials.username is not None:
            return await self.login(credentials.username, credentials.password or "", credentials.peer)
        raise AuthRequired("A token or credentials are required")

    def _from_token(self, token: str) -> Identity:
        prefix = split_apikey(token)
        if prefix is not None:
            return self._from_apikey(token, prefix)
        claims = self.issuer.verify(token)
        if claims.token_id in self._revoked:
            raise AuthFailed("The token has been revoked")
        user = self.users.get(claims.subject)
        if user is None or user.get("disabled"):
            raise AuthFailed("The token's user no longer exists or is disabled")
        identity = Identity(claims.subject, frozenset(claims.roles), _frozen(claims.namespaces))
        self._remember(token, _Cached(identity, claims.token_id, claims.expires))
        return identity

    def _from_apikey(self, key: str, prefix: str) -> Identity:
        record = self._apikeys.get(prefix)
        if record is None or not hmac.compare_digest(record["hash"], hash_apikey(key)):
            raise AuthFailed("The API key is not valid")
        user = self.users.get(record["owner"])
        if user is None or user.get("disabled"):
            raise AuthFailed("The API key's owner no longer exists or is disabled")
        record["last_used_at"] = time.time()
        self._used.add(prefix)
        identity = _identity(user)
        self._remember(key, _Cached(identity, f"apikey:{prefix}", time.time() + 60))
        return identity

    def _remember(self, token: str, cached: _Cached) -> None:
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[token] = cached

    async def login(self, username: str, password: str, peer: str) -> Identity:
        """Check a username and password (throttled); return the user's identity.

        Raises:
            RateLimited: too many recent failures for this username or address.
            AuthFailed: wrong username or password (the same answer for both).
        """
        self.throttle.check(username, peer)
        # Read the database itself: `flowbus user add/passwd` may have changed it meanwhile, and a
        # store may answer get() from a cache that learns of another process's writes late.
        async with self._users_lock:
            user = await self._stored_user(username) if _USERNAME.fullmatch(username) else None
            if user is not None:
                await self._known(user)
        stored = user["password_hash"] if user else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok or user is None or user.get("disabled"):
            self.throttle.failed(username, peer)
            raise AuthFailed("Wrong username or password")
        return _identity(user)

    # -- Authorizer -----------------------------------------------------------------------------

    def authorize(
        self, identity: Identity, method: str, endpoint: str, namespace: str, permission: str | None = None
    ) -> None:
        key = (identity.roles, identity.namespaces, method, endpoint, namespace, permission)
        if key in self._allowed:
            return
        self._check(identity, method, endpoint, namespace, permission)
        if len(self._allowed) >= 100_000:
            self._allowed.clear()
        self._allowed.add(key)

    def _check(self, identity: Identity, method: str, endpoint: str, namespace: str, permission: str | None) -> None:
        if identity.namespaces is not None and endpoint in _ADMIN_ONLY:
            # Users and roles belong to no namespace: managing them could lift the limit itself.
            raise PermissionDenied(f"{identity.subject} is limited to namespaces: users and roles are not theirs")
        limited = identity.namespaces is not None and namespace not in identity.namespaces
        if limited and not (namespace == "" and endpoint in _OUTSIDE_NAMESPACES):
            raise PermissionDenied(f"{identity.subject} may not use namespace {namespace!r}")
        verdicts = [self.roles[r].allows(method, endpoint, namespace) for r in identity.roles if r in self.roles]
        if False in verdicts or True not in verdicts:
            raise PermissionDenied(f"{identity.subject} may not {method} {endpoint}")
        if permission is not None and not any(
            self.roles[r].grants(permission) for r in identity.roles if r in self.roles
        ):
            raise PermissionDenied(f"{identity.subject} lacks the permission {permission!r}")

    # -- tokens -------------------------------------------------------------------------------

    async def issue_token(self, identity: Identity) -> dict[str, Any]:
        """Issue a token for ``identity`` and record it (so it can be listed and revoked)."""
        namespaces = None if identity.namespaces is None else sorted(identity.namespaces)
        token, claims = self.issuer.issue(identity.subject, sorted(identity.roles), namespaces)
        record = {"id": claims.token_id, "username": identity.subject, "expires_at": claims.expires, "revoked": False}
        await self.store.insert(TOKENS, "", record, _no_text)
        return {"token": token, "expires": _rfc3339(claims.expires), "id": claims.token_id}

    @staticmethod
    def is_admin(identity: Identity) -> bool:
        """Whether ``identity`` may act on other users' tokens and API keys: an admin not limited
        to namespaces (a limited one could otherwise take a key of an unlimited user)."""
        return "admin" in identity.roles and identity.namespaces is None

    async def revoke_token(self, token_id: str, by: Identity) -> dict[str, Any]:
        """Revoke a token by id; users may revoke their own, admins (:meth:`is_admin`) any."""
        record = await self.store.get(TOKENS, "", token_id)
        if record is None or (record["username"] != by.subject and not self.is_admin(by)):
            raise DoesNotExist("No such token")
        self._revoked.add(token_id)
        return await self.store.patch(TOKENS, "", token_id, {"revoked": True}, _no_text)

    async def revoke_user_tokens(self, username: str) -> None:
        """Revoke every usable token of ``username``: at once in memory, then in the store, in one
        transaction (an expired token needs no revoking, and may be pruned meanwhile)."""
        cutoff = time.time() - LEEWAY
        records = await self._all(TOKENS, {"username": username})
        ids = [r["id"] for r in records if not r.get("revoked") and r["expires_at"] >= cutoff]
        self._revoked.update(ids)
        await self.store.transaction([Patch(TOKENS, "", token_id, {"revoked": True}, _no_text) for token_id in ids])

    def claims_of(self, token: str) -> Claims:
        """Verify a token and return its claims (for refresh)."""
        claims = self.issuer.verify(token)
        if claims.token_id in self._revoked:
            raise AuthFailed("The token has been revoked")
        return claims

    # -- users --------------------------------------------------------------------------------

    async def add_user(
        self, username: str, password: str, roles: Iterable[str], namespaces: list[str] | None = None
    ) -> dict[str, Any]:
        """Create a user; raise Conflict if the name is taken, InvalidData for bad fields."""
        _check_username(username)
        if username in self.users:
            raise Conflict(f"User {username!r} exists")
        record = {
            "id": username,
            "username": username,
            "roles": self._check_roles(roles),
            "namespaces": _check_namespaces(namespaces),
            "disabled": False,
            "password_hash": await _hash(password),
        }
        async with self._users_lock:
            stored = await self.store.insert(USERS, "", record, _no_text)
            self.users[username] = stored
        return stored

    async def change_user(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a user's password, roles, namespaces or disabled flag."""
        if username not in self.users:
            raise DoesNotExist(f"No user {username!r}")
        patch: dict[str, Any] = {}
        if "password" in changes:
            patch["password_hash"] = await _hash(changes["password"])
        if "roles" in changes:
            patch["roles"] = self._check_roles(changes["roles"])
        if "namespaces" in changes:
            patch["namespaces"] = _check_namespaces(changes["namespaces"])
        if "disabled" in changes:
            if not isinstance(changes["disabled"], bool):
                raise InvalidData("'disabled' must be true or false", field="disabled")
            patch["disabled"] = changes["disabled"]
        async with self._users_lock:
            stored = await self.store.patch(USERS, "", username, patch, _no_text)
            self.users[username] = stored
        if patch.keys() & set(_REVOKING):
            await self.revoke_user_tokens(username)
            self._cache.clear()
        return stored

    async def remove_user(self, username: str) -> dict[str, Any]:
        async with self._users_lock:
            removed = await self.store.delete(USERS, "", username)
            self.users.pop(username, None)
        await self.revoke_user_tokens(username)
        for prefix in [p for p, k in self._apikeys.items() if k["owner"] == username]:
            await self.remove_apikey(prefix)
        self._cache.clear()
        return removed

    def _check_roles(self, roles: Any) -> list[str]:
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidData("'roles' must be a list of role names", field="roles")
        unknown = [r for r in roles if r not in self.roles]
        if unknown:
            raise InvalidData(f"Unknown roles: {', '.join(unknown)}", field="roles")
        return list(roles)

    # -- API keys -----------------------------------------------------------------------------

    async def add_apikey(self, owner: str, label: str = "") -> tuple[str, dict[str, Any]]:
        """Make an API key for ``owner``; return the key (shown once) and its stored record."""
        key, prefix = new_apikey()
        record = {"id": prefix, "prefix": prefix, "owner": owner, "label": label, "hash": hash_apikey(key)}
        stored = await self.store.insert(APIKEYS, "", record, _no_text)
        self._apikeys[prefix] = {**stored, "last_used_at": None}
        return key, stored

    async def remove_apikey(self, prefix: str) -> dict[str, Any]:
        removed = await self.store.delete(APIKEYS, "", prefix)
        self._apikeys.pop(prefix, None)
        self._cache = {k: v for k, v in self._cache.items() if v.token_id != f"apikey:{prefix}"}
        return removed

    async def save_apikey_use(self) -> None:
        """Write when each API key used since the last save was last used into its stored record
        (:meth:`watch` does it every few seconds, and the bus when it stops)."""
        used, self._used = self._used, set()
        for prefix in used:
            record = self._apikeys.get(prefix)
            if record is None:
                continue
            try:
                await self.store.patch(APIKEYS, "", prefix, {"last_used_at": record["last_used_at"]}, _no_text)
            except DoesNotExist:  # removed meanwhile, by this process or another
                pass

    def apikey_last_used(self, prefix: str) -> str | None:
        used = self._apikeys.get(prefix, {}).get("last_used_at")
        return _rfc3339(used) if used else None

    # -- roles --------------------------------------------------------------------------------

    def describe_role(self, name: str) -> dict[str, Any]:
        """A role as LIST and OPEN of ``auth/role`` show it."""
        role = self.roles[name]
        rules = [
            {
                "endpoints": r.endpoints,
                "methods": sorted(r.methods, key=ALL_METHODS.index),
                "namespaces": None if r.namespaces is None else list(r.namespaces),
                "deny": r.deny,
            }
            for r in role.rules
        ]
        return {"id": name, "builtin": name in BUILTIN_ROLES, "rules": rules, "permissions": list(role.permissions)}

    async def save_role(self, raw: dict[str, Any], *, new: bool) -> dict[str, Any]:
        """Check, store and apply a role definition ``{"id", "rules", "permissions"}``."""
        name = raw.get("id")
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role")
        role = _role_from(raw)
        record = {"rules": raw.get("rules", []), "permissions": raw.get("permissions", [])}
        if new:
            await self.store.insert(ROLES, "", {"id": role.name, **record}, _no_text)
        else:
            await self.store.patch(ROLES, "", role.name, record, _no_text)
        self.roles[role.name] = role
        self._allowed.clear()
        self._cache.clear()
        return self.describe_role(role.name)

    async def delete_role(self, name: str) -> dict[str, Any]:
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role")
        shown = self.describe_role(name) if name in self.roles else None
        await self.store.delete(ROLES, "", name)
        self.roles.pop(name, None)
        self._allowed.clear()
        self._cache.clear()
        return shown or {"id": name}

    async def token_records(self) -> list[dict[str, Any]]:
        return await self._all(TOKENS)

    async def apikey_records(self) -> list[dict[str, Any]]:
        return await self._all(APIKEYS)


def _older(event: Event, known: dict[str, Any] | None) -> bool:
    """Whether ``event`` carries an older version of a record than the one in memory (this process
    wrote a newer one before the feed brought the change)."""
    if known is None or event.version is None:
        return False
    return bool(event.version < known.get("version", 0))


def _role_from(raw: dict[str, Any]) -> Role:
    name, rules, permissions = raw.get("id"), raw.get("rules", []), raw.get("permissions", [])
    if not isinstance(name, str) or not _USERNAME.fullmatch(name):
        raise InvalidData("A role needs an 'id' (its name)", field="id")
    if not isinstance(rules, list):
        raise InvalidData("'rules' must be a list", field="rules")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise InvalidData("'permissions' must be a list of strings", field="permissions")
    return Role(name, tuple(Rule.parse(r) for r in rules), tuple(permissions))


def _identity(user: dict[str, Any]) -> Identity:
    return Identity(user["id"], frozenset(user.get("roles", [])), _frozen(user.get("namespaces")))


def _frozen(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _check_username(username: Any) -> None:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise InvalidData("'username' must be 1-64 characters of [A-Za-z0-9._@-]", field="username")


def _check_namespaces(namespaces: Any) -> list[str] | None:
    if namespaces is None:
        return None
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise InvalidData("'namespaces' must be a list of namespace names, or null for all", field="namespaces")
    return namespaces


async def _hash(password: Any) -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise InvalidData("'password' must be a string of at least 8 characters", field="password")
    return await asyncio.to_thread(hash_password, password)


def _no_text(obj: dict[str, Any]) -> str:
    return ""


@functools.cache
def _dummy_hash() -> str:
    """Checked when the username does not exist, so that a wrong username costs as much time as a
    wrong password and the answer time does not reveal which names exist."""
    return hash_password(secrets.token_urlsafe(16))
