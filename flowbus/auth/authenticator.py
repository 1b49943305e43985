"""Authentication: credentials (a JWT, an API key, a username and password) to an identity.

:class:`UserAuthenticator` is the bus's :class:`~flowbus.auth.base.Authenticator`. Its
synchronous :meth:`~UserAuthenticator.known` answers credentials verified before from the token
cache, so most calls need no waiting; :meth:`~UserAuthenticator.authenticate` verifies the rest
against the users and API keys the auth state keeps current, and logs users in (throttled).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import secrets
import time

from flowbus.auth.base import Credentials, Identity
from flowbus.auth.names import AUTH_APIKEYS as APIKEYS, NAME
from flowbus.auth.state import AuthState, no_text, user_identity
from flowbus.auth.throttle import LoginThrottle
from flowbus.auth.token_service import TokenService
from flowbus.auth.tokens import hash_apikey, hash_password, split_apikey, verify_password
from flowbus.errors import AuthFailed, AuthRequired, DoesNotExist

__all__ = ["APIKEY_REMEMBERED", "SAVE_USE_AFTER", "UserAuthenticator"]

logger = logging.getLogger("flowbus.auth")

APIKEY_REMEMBERED = 60.0
"""Seconds a checked API key is answered from the cache (so its last use is exact to about this)."""
SAVE_USE_AFTER = 2.0
"""Seconds after an API key's use before when it was last used is saved in the store."""


class UserAuthenticator:
    """Authenticates tokens, API keys and logins against the users the auth state holds.

    Args:
        state: users, API keys and revocations, kept current.
        tokens: verifies tokens and holds the cache of verified identities.
        throttle: failed-login limits.
    """

    def __init__(self, state: AuthState, tokens: TokenService, throttle: LoginThrottle) -> None:
        self.state = state
        self.tokens = tokens
        self.throttle = throttle
        self._cache = tokens.cache
        self._used: set[str] = set()  # API keys used since their last use was saved
        self._save_timer: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None

    def known(self, credentials: Credentials) -> Identity | None:
        """The identity of a token or API key verified before, unexpired and not revoked, else None."""
        return self._cache.get(credentials.token or credentials.apikey)

    async def authenticate(self, credentials: Credentials) -> Identity:
        token = credentials.token or credentials.apikey
        if token:
            identity = self._cache.get(token)
            return identity if identity is not None else self._from_token(token)
        if credentials.username is not None:
            return await self.login(credentials.username, credentials.password or "", credentials.peer)
        raise AuthRequired("A token or credentials are required")

    def _from_token(self, token: str) -> Identity:
        prefix = split_apikey(token)
        if prefix is not None:
            return self._from_apikey(token, prefix)
        claims = self.tokens.claims_of(token)
        user = self.state.users.get(claims.subject)
        if user is None or user.get("disabled"):
            raise AuthFailed("The token's user no longer exists or is disabled")
        namespaces = None if claims.namespaces is None else frozenset(claims.namespaces)
        identity = Identity(claims.subject, frozenset(claims.roles), namespaces)
        self._cache.remember(token, identity, claims.token_id, claims.expires)
        return identity

    def _from_apikey(self, key: str, prefix: str) -> Identity:
        record = self.state.apikeys.get(prefix)
        if record is None or not hmac.compare_digest(record["hash"], hash_apikey(key)):
            raise AuthFailed("The API key is not valid")
        user = self.state.users.get(record["owner"])
        if user is None or user.get("disabled"):
            raise AuthFailed("The API key's owner no longer exists or is disabled")
        record["last_used_at"] = time.time()
        self._used_now(prefix)
        identity = user_identity(user)
        self._cache.remember(key, identity, f"apikey:{prefix}", time.time() + APIKEY_REMEMBERED)
        return identity

    async def login(self, username: str, password: str, peer: str) -> Identity:
        """Check a username and password (throttled); return the user's identity.

        Raises:
            RateLimited: too many recent failures for this username or address.
            AuthFailed: wrong username or password (the same answer for both).
        """
        self.throttle.check(username, peer)
        # Read the database itself: `flowbus user add/passwd` may have changed it a moment ago, and
        # a store may answer get() from a cache that learns of another process's writes late.
        async with self.state.users_lock:
            user = await self.state.stored_user(username) if NAME.fullmatch(username) else None
            if user is not None:
                await self.state.refresh_user(user)
        stored = user["password_hash"] if user else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok or user is None or user.get("disabled"):
            self.throttle.failed(username, peer)
            raise AuthFailed("Wrong username or password")
        return user_identity(user)

    # -- when API keys were last used ----------------------------------------------------------

    def _used_now(self, prefix: str) -> None:
        self._used.add(prefix)
        if self._save_timer is None and self._saving is None:
            loop = asyncio.get_running_loop()
            self._save_timer = loop.call_later(SAVE_USE_AFTER, self._save_due)

    def _save_due(self) -> None:
        self._save_timer = None
        self._saving = asyncio.create_task(self._save_logged(), name="auth: save API key use")

    async def _save_logged(self) -> None:
        try:
            await self.save_apikey_use()
        except Exception:
            logger.error("could not save when API keys were last used", exc_info=True)
        self._saving = None
        if self._used:  # used again while saving
            self._save_timer = asyncio.get_running_loop().call_later(SAVE_USE_AFTER, self._save_due)

    async def save_apikey_use(self) -> None:
        """Write when each API key used since the last save was last used into its stored record
        (:data:`SAVE_USE_AFTER` seconds after a use, and when the bus stops)."""
        used, self._used = self._used, set()
        for prefix in used:
            record = self.state.apikeys.get(prefix)
            if record is None:
                continue
            try:
                await self.state.store.patch(APIKEYS, "", prefix, {"last_used_at": record["last_used_at"]}, no_text)
            except DoesNotExist:  # removed meanwhile, by this process or another
                pass

    async def stop(self) -> None:
        """Save when API keys were last used, now, and stop saving later."""
        if self._saving is not None:  # let a save under way finish (it may set the timer again)
            with contextlib.suppress(asyncio.CancelledError):
                await self._saving
            self._saving = None
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        await self.save_apikey_use()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the username does not exist, so that a wrong username costs as much time as a
    wrong password and the answer time does not reveal which names exist."""
    return hash_password(secrets.token_urlsafe(16))
