"""Namespace-limited users: whatever the method, nothing of another namespace, even by guessing ids."""

from __future__ import annotations

from typing import Any

import pytest

from tests.endpoints.helpers import DEVICES, PASSWORD, add_user, admin, bearer, http, ok, refused, unique, ws_call
from tests.support import Served

DEVICE = "inventory/device"


class Limited:
    """An operator limited to its own namespace, and an object of another namespace it knows the id of."""

    def __init__(self, token: str, own: str, other: str, secret: dict[str, Any]) -> None:
        self.token, self.own, self.other, self.secret = token, own, other, secret


@pytest.fixture
async def limited(bus: Served) -> Limited:
    own, other = unique("site-a"), unique("site-b")
    _, token = await add_user(bus, ["operator"], [own])
    secret = await admin(bus, "CREATE", DEVICE, namespace=other, data={"id": "core-1", "name": "secret core"})
    return Limited(token, own, other, secret)


async def test_works_in_its_own_namespace(bus: Served, limited: Limited) -> None:
    """In its own namespace the user may CREATE, LIST, OPEN, search (INDEX), UPDATE and DELETE."""
    ns, token = limited.own, limited.token
    device = ok(await ws_call(bus, token, "CREATE", DEVICE, namespace=ns, data={"id": "core-1", "name": "core"}))
    assert ok(await ws_call(bus, token, "LIST", DEVICE, namespace=ns)) == [device]
    assert ok(await ws_call(bus, token, "OPEN", DEVICE, namespace=ns, objectid="core-1")) == device
    found = ok(await ws_call(bus, token, "INDEX", DEVICE, namespace=ns, parameters={"q": "core"}))
    assert [entry["id"] for entry in found] == ["core-1"]
    ok(await ws_call(bus, token, "UPDATE", DEVICE, namespace=ns, objectid="core-1", data={"name": "edge"}))
    ok(await ws_call(bus, token, "DELETE", DEVICE, namespace=ns, objectid="core-1"))


ELSEWHERE = {
    "LIST": {},
    "OPEN-guessed-id": {"method": "OPEN", "objectid": "core-1"},
    "OPEN-missing-id": {"method": "OPEN", "objectid": "no-such-id"},
    "INDEX-search": {"method": "INDEX", "parameters": {"q": "secret"}},
    "INDEX-guessed-id": {"method": "INDEX", "objectid": "core-1"},
    "CREATE": {"method": "CREATE", "data": {"name": "planted"}},
    "CREATE-same-id": {"method": "CREATE", "data": {"id": "core-1", "name": "planted"}},
    "UPDATE-guessed-id": {"method": "UPDATE", "objectid": "core-1", "data": {"name": "changed"}},
    "DELETE-guessed-id": {"method": "DELETE", "objectid": "core-1"},
}


@pytest.mark.parametrize("fields", ELSEWHERE.values(), ids=ELSEWHERE.keys())
async def test_another_namespace_is_permission_denied(bus: Served, limited: Limited, fields: dict[str, Any]) -> None:
    """Any call in another namespace answers PERMISSION_DENIED (also for a missing id) and changes nothing."""
    fields = {"method": "LIST", **fields}
    answer = await ws_call(bus, limited.token, endpoint=DEVICE, namespace=limited.other, **fields)
    refused(answer, "PERMISSION_DENIED")
    assert "secret" not in answer["message"]
    assert await admin(bus, "LIST", DEVICE, namespace=limited.other) == [limited.secret]


@pytest.mark.parametrize("namespace", ["", "site-a", "SITE-A"], ids=["default", "prefix-of-own", "other-case"])
async def test_namespaces_are_matched_exactly(bus: Served, limited: Limited, namespace: str) -> None:
    """The default namespace and names merely resembling the user's own are other namespaces."""
    refused(await ws_call(bus, limited.token, "LIST", DEVICE, namespace=namespace), "PERMISSION_DENIED")


async def test_another_namespace_over_http_is_403(bus: Served, limited: Limited) -> None:
    """Over HTTP, Flow-Request-Namespace of another namespace answers PERMISSION_DENIED with status 403."""
    headers = {**bearer(limited.token), "Flow-Request-Namespace": limited.other}
    for path in (DEVICES, DEVICES + "core-1"):
        status, _, envelope = await http(bus, "GET", path, headers=headers)
        assert status == 403
        refused(envelope, "PERMISSION_DENIED")


async def test_api_key_of_a_limited_user_is_limited_too(bus: Served, limited: Limited) -> None:
    """An API key acts with its owner's namespaces."""
    key = ok(await ws_call(bus, limited.token, "CREATE", "auth/apikey", data={}))["key"]
    ok(await ws_call(bus, key, "LIST", DEVICE, namespace=limited.own))
    refused(await ws_call(bus, key, "LIST", DEVICE, namespace=limited.other), "PERMISSION_DENIED")


async def test_limited_user_may_refresh_and_log_out(bus: Served, limited: Limited) -> None:
    """A namespace-limited user refreshes and logs out in the default namespace, not in another one."""
    refused(await ws_call(bus, limited.token, "LIST", "auth/token", namespace=limited.other), "PERMISSION_DENIED")
    fresh = ok(await ws_call(bus, limited.token, "RUN", "auth/token", objectid="refresh"))
    ok(await ws_call(bus, fresh["token"], "LIST", DEVICE, namespace=limited.own))
    ok(await ws_call(bus, fresh["token"], "DELETE", "auth/token", objectid=fresh["id"]))
    refused(await ws_call(bus, fresh["token"], "LIST", DEVICE, namespace=limited.own), "AUTH_FAILED")


async def test_changing_a_users_namespaces_revokes_its_tokens(bus: Served, limited: Limited) -> None:
    """UPDATE of a user's namespaces revokes its tokens; a new login carries the new namespaces."""
    name = next(user["id"] for user in await admin(bus, "LIST", "auth/user") if user["namespaces"] == [limited.own])
    await admin(bus, "UPDATE", "auth/user", objectid=name, data={"namespaces": [limited.other]})
    refused(await ws_call(bus, limited.token, "LIST", DEVICE, namespace=limited.own), "AUTH_FAILED")
    token = ok(bus.login(name, PASSWORD))["token"]
    assert ok(await ws_call(bus, token, "LIST", DEVICE, namespace=limited.other)) == [limited.secret]


@pytest.mark.parametrize("endpoint", ["auth/user", "auth/role"])
async def test_a_limited_admin_cannot_manage_users_or_roles(bus: Served, endpoint: str) -> None:
    """Users and roles belong to no namespace: an admin limited to one may not see or change them
    (else it could lift its own limit), in its namespace or in the default one."""
    own = unique("site-a")
    name, token = await add_user(bus, ["admin"], [own])
    for namespace in (own, ""):
        refused(await ws_call(bus, token, "LIST", endpoint, namespace=namespace), "PERMISSION_DENIED")
    lift = await ws_call(bus, token, "UPDATE", "auth/user", objectid=name, namespace=own, data={"namespaces": None})
    refused(lift, "PERMISSION_DENIED")
    (user,) = [u for u in await admin(bus, "LIST", "auth/user") if u["id"] == name]
    assert user["namespaces"] == [own]
    assert ok(await ws_call(bus, token, "LIST", DEVICE, namespace=own)) == []


async def test_a_limited_admin_acts_only_for_itself_on_keys_and_tokens(bus: Served) -> None:
    """A limited admin may not make an API key for another user (it would act without the limit),
    nor list or revoke another user's keys and tokens; its own still work."""
    own = unique("site-a")
    name, token = await add_user(bus, ["admin"], [own])
    taken = await ws_call(bus, token, "CREATE", "auth/apikey", data={"owner": "admin"})
    refused(taken, "INVALID_DATA")
    assert {key["owner"] for key in ok(await ws_call(bus, token, "LIST", "auth/apikey"))} <= {name}
    assert {t["username"] for t in ok(await ws_call(bus, token, "LIST", "auth/token"))} == {name}
    others = [t["id"] for t in await admin(bus, "LIST", "auth/token") if t["username"] != name]
    refused(await ws_call(bus, token, "DELETE", "auth/token", objectid=others[0]), "DO_NOT_EXIST")
    key = ok(await ws_call(bus, token, "CREATE", "auth/apikey", data={}))["key"]
    assert ok(await ws_call(bus, key, "LIST", DEVICE, namespace=own)) == []
    refused(await ws_call(bus, key, "LIST", DEVICE, namespace=""), "PERMISSION_DENIED")
