"""API keys: shown once, stored hashed, listed without secrets, revoked by DELETE, acting as their owner."""

from __future__ import annotations

import re
from pathlib import Path

from tests.endpoints.helpers import DEVICE, DEVICES, add_user, admin, call, http, ok, refused, unique, ws_call
from tests.support import Served, serve

KEY = re.compile(r"fbk_([0-9a-f]{8})_[A-Za-z0-9_-]{20,}")


async def test_create_shows_the_key_once(bus: Served) -> None:
    """CREATE auth/apikey answers the key (fbk_<prefix>_<secret>) and its record once; LIST never shows it."""
    name, token = await add_user(bus, ["operator"])
    created = ok(await ws_call(bus, token, "CREATE", "auth/apikey", data={"label": "ci"}))
    match = KEY.fullmatch(created["key"])
    assert match and created["prefix"] == match[1] == created["id"]
    assert (created["owner"], created["label"], created["last_used"]) == (name, "ci", None)
    assert "created" in created and "hash" not in created
    rows = ok(await ws_call(bus, token, "LIST", "auth/apikey"))
    assert created["key"] not in str(rows) and created["key"].split("_", 2)[2] not in str(rows)


async def test_list_shows_prefix_owner_created_last_used_never_key_or_hash(bus: Served) -> None:
    """LIST auth/apikey shows prefix, owner, label, created and last use (after one), never the key or its hash."""
    name, token = await add_user(bus, ["operator"])
    key = ok(await ws_call(bus, token, "CREATE", "auth/apikey", data={}))["key"]
    ok(await ws_call(bus, key, "LIST"))
    (row,) = ok(await ws_call(bus, token, "LIST", "auth/apikey"))
    assert {"id", "prefix", "owner", "label", "created", "last_used"} <= set(row)
    assert "key" not in row and "hash" not in row
    assert row["owner"] == name and row["prefix"] == key.split("_")[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["last_used"])


async def test_last_use_survives_a_restart(tmp_path: Path) -> None:
    """When a key was last used is kept in the store: a restarted bus still lists it."""
    first = serve(tmp_path)
    try:
        key = (await admin(first, "CREATE", "auth/apikey", data={}))["key"]
        ok(await ws_call(first, key, "LIST"))
        (before,) = await admin(first, "LIST", "auth/apikey")
    finally:
        first.stop()
    second = serve(tmp_path)
    try:
        (after,) = await admin(second, "LIST", "auth/apikey")
    finally:
        second.stop()
    assert before["last_used"] is not None
    assert after["last_used"] == before["last_used"]


async def test_key_is_stored_hashed(bus: Served) -> None:
    """The data directory keeps neither the key nor its secret part, only its SHA-256 and prefix."""
    key = (await admin(bus, "CREATE", "auth/apikey", data={}))["key"]
    secret = key.split("_", 2)[2].encode()
    ok(await ws_call(bus, key, "LIST"))
    stored = b"".join(path.read_bytes() for path in bus.data.iterdir() if path.is_file())
    assert secret not in stored


async def test_delete_revokes_the_key_at_once(bus: Served) -> None:
    """DELETE auth/apikey revokes the key: refused at once, also on a connection that used it, and over HTTP."""
    _, token = await add_user(bus, ["operator"])
    created = ok(await ws_call(bus, token, "CREATE", "auth/apikey", data={}))
    key = created["key"]
    async with bus.connect(token=key) as ws:
        ok(await call(ws, "LIST"))
        ok(await ws_call(bus, token, "DELETE", "auth/apikey", objectid=created["id"]))
        refused(await call(ws, "LIST"), "AUTH_FAILED")
    status, _, envelope = await http(bus, "GET", DEVICES, headers={"X-API-Key": key})
    assert status == 401
    refused(envelope, "AUTH_FAILED")
    assert ok(await ws_call(bus, token, "LIST", "auth/apikey")) == []


async def test_key_with_a_wrong_secret_is_refused(bus: Served) -> None:
    """A key with a known prefix but another secret is refused with AUTH_FAILED."""
    key = (await admin(bus, "CREATE", "auth/apikey", data={}))["key"]
    prefix = key.split("_")[1]
    status, _, envelope = await http(bus, "GET", DEVICES, headers={"X-API-Key": f"fbk_{prefix}_{'x' * 43}"})
    assert status == 401
    refused(envelope, "AUTH_FAILED")


async def test_key_acts_with_its_owners_roles(bus: Served) -> None:
    """A viewer's key (made by an admin for it) may read but not write."""
    name, _ = await add_user(bus, ["viewer"])
    key = (await admin(bus, "CREATE", "auth/apikey", data={"owner": name}))["key"]
    ns = unique("ns")
    ok(await ws_call(bus, key, "LIST", DEVICE, namespace=ns))
    refused(await ws_call(bus, key, "CREATE", DEVICE, namespace=ns, data={"name": "x"}), "PERMISSION_DENIED")


async def test_only_an_admin_makes_keys_for_others(bus: Served) -> None:
    """An operator may not make a key for another user (INVALID_DATA on owner); an admin may."""
    other, _ = await add_user(bus, ["viewer"])
    _, token = await add_user(bus, ["operator"])
    refused(await ws_call(bus, token, "CREATE", "auth/apikey", data={"owner": other}), "INVALID_DATA")
    assert (await admin(bus, "CREATE", "auth/apikey", data={"owner": other}))["owner"] == other
    refused(await ws_call(bus, bus.token, "CREATE", "auth/apikey", data={"owner": unique("no")}), "INVALID_DATA")


async def test_users_see_and_revoke_only_their_own_keys(bus: Served) -> None:
    """LIST shows a user its own keys only; DELETE of another's key answers DO_NOT_EXIST and keeps it working."""
    _, alice = await add_user(bus, ["operator"])
    _, bob = await add_user(bus, ["operator"])
    bobs = ok(await ws_call(bus, bob, "CREATE", "auth/apikey", data={}))
    assert ok(await ws_call(bus, alice, "LIST", "auth/apikey")) == []
    refused(await ws_call(bus, alice, "DELETE", "auth/apikey", objectid=bobs["id"]), "DO_NOT_EXIST")
    ok(await ws_call(bus, bobs["key"], "LIST"))
    admins_view = await admin(bus, "LIST", "auth/apikey", parameters={"limit": 1000})
    assert bobs["id"] in {row["id"] for row in admins_view}
