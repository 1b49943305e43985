"""The bus's tokens: issuing, revocation, the cache of verified identities, and pruning.

Every token issued leaves a record in ``auth/token`` (so it can be listed and revoked). A
verified token's identity is cached until it expires or is revoked, so checking a call costs a
dictionary lookup and a set lookup, not a signature verification. The records of tokens past
their expiry (and :data:`~flowbus.auth.tokens.LEEWAY`) are deleted when the bus starts and every
:data:`PRUNE_EVERY` seconds while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from flowbus.auth.authorizer import is_admin
from flowbus.auth.base import Identity
from flowbus.auth.names import AUTH_TOKENS as TOKENS
from flowbus.auth.state import AuthState, no_text, read_all
from flowbus.auth.tokens import LEEWAY, Claims, TokenIssuer
from flowbus.errors import AuthFailed, DoesNotExist
from flowbus.store.base import Patch, Store
from flowbus.timestamps import iso

__all__ = ["PRUNE_EVERY", "TokenCache", "TokenService"]

logger = logging.getLogger("flowbus.auth")

PRUNE_EVERY = 3600.0
"""Seconds between two deletions of the records of expired tokens."""
_PRUNE_CHUNK = 1000
_CACHED = 10_000
"""At most this many verified credentials are cached (then forgotten all at once)."""


@dataclass(slots=True)
class _Cached:
    identity: Identity
    token_id: str | None
    expires: float


class TokenCache:
    """The identities of credentials (tokens, API keys) verified before, until they expire or
    are revoked (``revoked`` is the set of revoked token ids, kept current by its owner)."""

    __slots__ = ("_entries", "_revoked")

    def __init__(self, revoked: set[str]) -> None:
        self._entries: dict[str, _Cached] = {}
        self._revoked = revoked

    def get(self, key: str | None) -> Identity | None:
        """The identity of ``key`` verified before, unexpired and not revoked, else None."""
        cached = self._entries.get(key) if key else None
        if cached is not None and cached.expires > time.time() and cached.token_id not in self._revoked:
            return cached.identity
        return None

    def remember(self, key: str, identity: Identity, token_id: str, expires: float) -> None:
        """Cache ``identity`` for ``key`` (whose token id is ``token_id``) until ``expires``."""
        if len(self._entries) >= _CACHED:
            self._entries.clear()
        self._entries[key] = _Cached(identity, token_id, expires)

    def forget(self, token_id: str | None = None) -> None:
        """Forget what was cached for ``token_id``, or everything."""
        if token_id is None:
            self._entries.clear()
            return
        for key in [k for k, v in self._entries.items() if v.token_id == token_id]:
            del self._entries[key]


class TokenService:
    """Issues, revokes and verifies the bus's tokens, and prunes the records of expired ones.

    Args:
        store: where token records live.
        issuer: signs and verifies JWTs.
        state: the auth state (its set of revoked token ids).
        prune_every: seconds between two prunings while running.
    """

    def __init__(self, store: Store, issuer: TokenIssuer, state: AuthState, prune_every: float = PRUNE_EVERY) -> None:
        self.store = store
        self.issuer = issuer
        self.state = state
        self.prune_every = prune_every
        self.cache = TokenCache(state.revoked)
        self._timer: asyncio.TimerHandle | None = None
        self._pruning: asyncio.Task[None] | None = None

    async def issue(self, identity: Identity) -> dict[str, Any]:
        """Issue a token for ``identity`` and record it (so it can be listed and revoked)."""
        namespaces = None if identity.namespaces is None else sorted(identity.namespaces)
        token, claims = self.issuer.issue(identity.subject, sorted(identity.roles), namespaces)
        record = {"id": claims.token_id, "username": identity.subject, "expires_at": claims.expires, "revoked": False}
        await self.store.insert(TOKENS, "", record, no_text)
        return {"token": token, "expires": iso(claims.expires), "id": claims.token_id}

    async def revoke(self, token_id: str, by: Identity) -> dict[str, Any]:
        """Revoke a token by id; users may revoke their own, admins (:func:`is_admin`) any."""
        record = await self.store.get(TOKENS, "", token_id)
        if record is None or (record["username"] != by.subject and not is_admin(by)):
            raise DoesNotExist("No such token")
        self.state.revoked.add(token_id)
        return await self.store.patch(TOKENS, "", token_id, {"revoked": True}, no_text)

    async def revoke_user(self, username: str) -> None:
        """Revoke every usable token of ``username``: at once in memory, then in the store, in one
        transaction (an expired token needs no revoking, and may be pruned meanwhile)."""
        cutoff = time.time() - LEEWAY
        records = await read_all(self.store, TOKENS, {"username": username})
        ids = [r["id"] for r in records if not r.get("revoked") and r["expires_at"] >= cutoff]
        self.state.revoked.update(ids)
        await self.store.transaction([Patch(TOKENS, "", token_id, {"revoked": True}, no_text) for token_id in ids])

    def claims_of(self, token: str) -> Claims:
        """Verify a token and return its claims.

        Raises:
            AuthFailed: the token is not valid, has expired or has been revoked.
        """
        claims = self.issuer.verify(token)
        if claims.token_id in self.state.revoked:
            raise AuthFailed("The token has been revoked")
        return claims

    async def records(self) -> list[dict[str, Any]]:
        """Every token record (ids, owners, expiry, revoked; never the tokens)."""
        return await read_all(self.store, TOKENS)

    # -- pruning ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Learn the revocations of the tokens still usable, deleting the records of the others."""
        live = await self.prune()
        self.state.revoked.update(t["id"] for t in live if t.get("revoked"))

    async def prune(self) -> list[dict[str, Any]]:
        """Delete the records of tokens that can no longer be used (expired, leeway included) and
        forget their revocations; return the records kept.

        Every login adds a record: without this, the table (and what :meth:`load` and
        :meth:`revoke_user` read) would grow for as long as the bus is used.
        """
        cutoff = time.time() - LEEWAY
        live: list[dict[str, Any]] = []
        expired: list[str] = []
        for record in await read_all(self.store, TOKENS):
            if record["expires_at"] >= cutoff:
                live.append(record)
            else:
                expired.append(record["id"])
        self.state.revoked.difference_update(expired)
        # A chunk's deletes are queued together and share commits; one another process made
        # first (DoesNotExist) is done already.
        for start in range(0, len(expired), _PRUNE_CHUNK):
            chunk = expired[start : start + _PRUNE_CHUNK]
            done = await asyncio.gather(*(self.store.delete(TOKENS, "", i) for i in chunk), return_exceptions=True)
            failed = [e for e in done if isinstance(e, BaseException) and not isinstance(e, DoesNotExist)]
            if failed:
                raise failed[0]
        return live

    def start(self) -> None:
        """Prune every :attr:`prune_every` seconds from now on (a timer: nothing runs between)."""
        self._timer = asyncio.get_running_loop().call_later(self.prune_every, self._prune_due)

    async def stop(self) -> None:
        """Stop pruning (a pruning under way is cancelled; the next start prunes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
            self._pruning = None

    def _prune_due(self) -> None:
        self._timer = None
        self._pruning = asyncio.create_task(self._prune_then_wait(), name="auth: prune token records")

    async def _prune_then_wait(self) -> None:
        try:
            await self.prune()
        except Exception:
            logger.error("could not delete the records of expired tokens", exc_info=True)
        self._pruning = None
        self.start()
