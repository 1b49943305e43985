"""The auth state follows change events of the auth collections instead of polling the store.

A second process's writes reach the auth state as events on the backplane (published by the
change feed); here the events are published as the feed would publish them, onto a real engine on
a real SQLite store, and the answers of its authenticator and authorizer are checked.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowbus.auth.base import Credentials
from flowbus.auth.engine import AuthEngine
from flowbus.auth.names import AUTH_APIKEYS, AUTH_ROLES, AUTH_TOKENS, AUTH_USERS
from flowbus.auth.tokens import TokenIssuer
from flowbus.backplane import Event, LocalBackplane
from flowbus.errors import AuthFailed, PermissionDenied
from flowbus.store import SQLiteStore


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AuthEngine]:
    store = SQLiteStore(tmp_path / "flowbus.db")
    await store.open()
    started = AuthEngine(
        store, TokenIssuer(secrets.token_bytes(32), 3600), admin_password="pw-admin-1", backplane=LocalBackplane()
    )
    await started.start()
    try:
        yield started
    finally:
        await started.stop()
        await store.close()


def publish(engine: AuthEngine, kind: str, collection: str, objectid: str, data: dict[str, Any], version: int) -> None:
    """Publish a change of an auth record as the change feed does."""
    assert engine.backplane is not None
    event = Event(kind, collection, objectid, "", data, seq=1, version=version)
    engine.backplane.publish(event.subject, event)


async def login(engine: AuthEngine, username: str, password: str) -> tuple[str, str]:
    identity = await engine.admin.login(username, password, "peer")
    issued = await engine.admin.issue_token(identity)
    return issued["token"], issued["id"]


async def test_a_token_revoked_elsewhere_is_refused(engine: AuthEngine) -> None:
    """An UPDATED token record with ``revoked`` refuses the token, even an identity cached before."""
    token, token_id = await login(engine, "admin", "pw-admin-1")
    assert (await engine.authenticator.authenticate(Credentials(token=token))).subject == "admin"
    record = {"id": token_id, "username": "admin", "expires_at": time.time() + 600, "revoked": True}
    publish(engine, "UPDATED", AUTH_TOKENS, token_id, record, version=2)
    assert engine.authenticator.known(Credentials(token=token)) is None
    with pytest.raises(AuthFailed, match="revoked"):
        await engine.authenticator.authenticate(Credentials(token=token))


async def test_a_user_deleted_elsewhere_cannot_use_its_tokens(engine: AuthEngine) -> None:
    """A DELETED user is forgotten and its (cached) token no longer lets it in."""
    await engine.admin.add_user("bob", "pw-bob-123", ["viewer"])
    token, _ = await login(engine, "bob", "pw-bob-123")
    await engine.authenticator.authenticate(Credentials(token=token))
    publish(engine, "DELETED", AUTH_USERS, "bob", dict(engine.state.users["bob"]), version=1)
    assert "bob" not in engine.state.users
    with pytest.raises(AuthFailed):
        await engine.authenticator.authenticate(Credentials(token=token))


async def test_an_older_user_record_does_not_replace_a_newer_one(engine: AuthEngine) -> None:
    """An event older than what this process wrote since is ignored (versions compared)."""
    await engine.admin.add_user("carol", "pw-carol-1", ["viewer"])
    await engine.admin.change_user("carol", {"roles": ["operator"]})
    if "version" not in engine.state.users["carol"]:
        pytest.skip("this store keeps no versions yet")
    stale = {**engine.state.users["carol"], "roles": ["viewer"], "version": 1}
    publish(engine, "UPDATED", AUTH_USERS, "carol", stale, version=1)
    assert engine.state.users["carol"]["roles"] == ["operator"]


async def test_a_role_changed_elsewhere_changes_what_is_allowed(engine: AuthEngine) -> None:
    """A role's new rules apply at once: what was allowed (and remembered) is refused."""
    role = {"id": "reader", "rules": [{"endpoints": "inventory/*", "methods": ["LIST"]}], "permissions": []}
    await engine.admin.save_role(dict(role), new=True)
    await engine.admin.add_user("dave", "pw-dave-12", ["reader"])
    identity = await engine.admin.login("dave", "pw-dave-12", "peer")
    engine.authorizer.authorize(identity, "LIST", "inventory/device", "", None)
    publish(engine, "UPDATED", AUTH_ROLES, "reader", {**role, "rules": []}, version=2)
    with pytest.raises(PermissionDenied):
        engine.authorizer.authorize(identity, "LIST", "inventory/device", "", None)


async def test_an_api_key_removed_elsewhere_is_refused(engine: AuthEngine) -> None:
    """A DELETED API key record refuses the key, even an identity cached before."""
    key, record = await engine.admin.add_apikey("admin")
    await engine.authenticator.authenticate(Credentials(apikey=key))
    publish(engine, "DELETED", AUTH_APIKEYS, record["id"], record, version=1)
    with pytest.raises(AuthFailed):
        await engine.authenticator.authenticate(Credentials(apikey=key))


async def test_an_api_key_added_elsewhere_is_accepted(engine: AuthEngine) -> None:
    """A CREATED API key record lets its key in without a reload."""
    key, record = await engine.admin.add_apikey("admin")
    await engine.admin.remove_apikey(record["id"])
    publish(engine, "CREATED", AUTH_APIKEYS, record["id"], record, version=1)
    assert (await engine.authenticator.authenticate(Credentials(apikey=key))).subject == "admin"


async def test_a_change_published_while_the_store_is_read_is_applied_after_the_reading(tmp_path: Path) -> None:
    """A change committed while the state reads the store wins over what the reading saw: it is
    held back and applied after, so a start never ends with an older record than the store's."""
    store = SQLiteStore(tmp_path / "flowbus.db")
    await store.open()
    try:
        rules = [{"endpoints": "inventory/*", "methods": ["LIST"]}]
        await store.insert(AUTH_ROLES, "", {"id": "reader", "rules": rules, "permissions": []}, lambda obj: "")
        backplane = LocalBackplane()
        engine = AuthEngine(store, TokenIssuer(secrets.token_bytes(32), 3600), backplane=backplane)
        unsubscribe = engine.state.follow(backplane)
        with engine.state.loading():
            newer = Event("UPDATED", AUTH_ROLES, "reader", "", {"id": "reader", "rules": []}, seq=2, version=2)
            backplane.publish(newer.subject, newer)
            assert "reader" not in engine.state.roles  # held back
            await engine.state.load()  # reads the older definition
        assert engine.state.roles["reader"].rules == ()
        for stop in unsubscribe:
            stop()
    finally:
        await store.close()
