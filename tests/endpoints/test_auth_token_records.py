"""The records of expired tokens are deleted: at startup, and from time to time while the bus runs.

Every login adds a record to ``auth/token``; without pruning the table would grow for as long
as the bus is used. These tests run the auth engine on a real SQLite file.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowbus.auth.base import Identity
from flowbus.auth.engine import AuthEngine
from flowbus.auth.tokens import LEEWAY, TokenIssuer
from flowbus.errors import AuthFailed
from flowbus.params import Query
from flowbus.store import SQLiteStore
from tests.flowbus.helpers import count_batches

TOKENS = "auth/token"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "flowbus.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def engine_on(store: SQLiteStore, issuer: TokenIssuer | None = None, prune_every: float = 3600) -> AuthEngine:
    return AuthEngine(store, issuer or TokenIssuer(secrets.token_bytes(32), 3600), prune_every=prune_every)


async def record(store: SQLiteStore, token_id: str, expires_in: float, revoked: bool = False) -> None:
    """A token record as a login (and a logout, if ``revoked``) leaves it."""
    fields = {"id": token_id, "username": "admin", "expires_at": time.time() + expires_in, "revoked": revoked}
    await store.insert(TOKENS, "", fields, lambda obj: "")


async def stored_ids(store: SQLiteStore) -> set[str]:
    rows, _ = await store.query(TOKENS, "", Query(limit=1000))
    return {row["id"] for row in rows}


async def test_startup_deletes_the_records_of_expired_tokens_only(store: SQLiteStore) -> None:
    """Expired past the leeway: deleted, revoked or not. Within the leeway or live: kept."""
    await record(store, "expired", -3600)
    await record(store, "expired-revoked", -LEEWAY - 1, revoked=True)
    await record(store, "in-leeway", -LEEWAY / 2)
    await record(store, "live", 600)
    await record(store, "live-revoked", 600, revoked=True)
    await engine_on(store).load()
    assert await stored_ids(store) == {"in-leeway", "live", "live-revoked"}


async def test_a_revoked_token_stays_refused_after_a_restart(store: SQLiteStore) -> None:
    """Pruning keeps what revocation needs: a live revoked token is still refused by a new engine."""
    engine = engine_on(store)
    await engine.load()
    await engine.admin.bootstrap("a-password-for-tests")
    identity = Identity("admin", frozenset({"admin"}), None)
    issued = await engine.tokens.issue(identity)
    await engine.tokens.revoke(issued["id"], identity)
    await record(store, "expired", -3600, revoked=True)
    restarted = engine_on(store, engine.tokens.issuer)
    await restarted.load()
    with pytest.raises(AuthFailed, match="revoked"):
        restarted.tokens.claims_of(issued["token"])
    assert "expired" not in await stored_ids(store)


async def test_the_running_bus_prunes_from_time_to_time(store: SQLiteStore) -> None:
    """A started engine deletes records that expired while it ran, every ``prune_every`` seconds
    (polled in a bounded loop)."""
    engine = engine_on(store, prune_every=0.01)
    await engine.start()
    try:
        await record(store, "expired-while-running", -3600)
        await record(store, "live", 600)
        for _ in range(500):
            if "expired-while-running" not in await stored_ids(store):
                break
            await asyncio.sleep(0.01)
    finally:
        await engine.stop()
    assert await stored_ids(store) == {"live"}


async def test_many_expired_records_are_deleted_in_few_commits(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bus that ran for long before pruning existed may hold many such records: they are
    deleted together (a commit per 512 of them), not one commit each, so starting stays quick."""
    await asyncio.gather(*(record(store, f"old-{i}", -3600) for i in range(2500)))
    await record(store, "live", 600)
    commits = count_batches(store, monkeypatch)
    await engine_on(store).load()
    assert await stored_ids(store) == {"live"}
    assert sum(commits) >= 2500 and len(commits) <= 10, commits
