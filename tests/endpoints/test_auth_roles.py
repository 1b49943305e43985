"""Roles and permissions: the built-in roles, roles defined as data, named RUN permissions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.endpoints.helpers import PASSWORD, add_user, admin, ok, refused, unique, ws_call
from tests.support import Served, http_json, serving

DEVICE, USER, THING = "inventory/device", "auth/user", "demo/thing"
ROLES = ("admin", "operator", "viewer")


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The module's bus also serves ``tests.endpoints.permapp`` (RUN purge needs ``demo.purge``)."""
    with serving(tmp_path_factory.mktemp("roles"), "--app", "tests.endpoints.permapp:create_app") as served:
        yield served


@pytest.fixture(scope="module")
def role_tokens(bus: Served) -> dict[str, str]:
    """A token of a user of each built-in role."""
    tokens = {}
    for role in ROLES:
        name = unique(role)
        data = {"username": name, "password": PASSWORD, "roles": [role]}
        created = http_json(f"{bus.http_url}/api/auth/auth/user/", data, {"Authorization": f"Bearer {bus.token}"})
        assert created["success"], created
        tokens[role] = bus.login(name, PASSWORD)["data"]["token"]
    return tokens


# -- built-in roles ---------------------------------------------------------------------------

OK, DENIED, UNSUPPORTED = "ok", "PERMISSION_DENIED", "METHOD_NOT_SUPPORTED"
ALL_OK = {"admin": OK, "operator": OK, "viewer": OK}
WRITE = {"admin": OK, "operator": OK, "viewer": DENIED}
ADMIN_ONLY = {"admin": OK, "operator": DENIED, "viewer": DENIED}
NOBODY = {"admin": UNSUPPORTED, "operator": UNSUPPORTED, "viewer": UNSUPPORTED}

DEVICE_TABLE = {"LIST": ALL_OK, "OPEN": ALL_OK, "INDEX": ALL_OK, "CREATE": WRITE, "UPDATE": WRITE, "DELETE": WRITE}
DEVICE_TABLE["RUN"] = NOBODY  # inventory/device has no RUN: METHOD_NOT_SUPPORTED whoever asks
USER_TABLE = {m: ADMIN_ONLY for m in ("LIST", "OPEN", "CREATE", "UPDATE", "DELETE")}
USER_TABLE |= {"INDEX": NOBODY, "RUN": NOBODY}


def table(methods: dict[str, dict[str, str]]) -> list[Any]:
    return [
        pytest.param(role, method, outcome[role], id=f"{role}-{method}")
        for method, outcome in methods.items()
        for role in ROLES
    ]


@pytest.mark.parametrize(("role", "method", "expected"), table(DEVICE_TABLE))
async def test_builtin_role_on_inventory_device(
    bus: Served, role_tokens: dict[str, str], role: str, method: str, expected: str
) -> None:
    """admin and operator may do all on inventory/device, viewer only read; a refused call changes nothing."""
    ns = unique("ns")
    device = await admin(bus, "CREATE", DEVICE, namespace=ns, data={"name": "sw-1"})
    fields: dict[str, Any] = {
        "LIST": {},
        "OPEN": {"objectid": device["id"]},
        "INDEX": {"parameters": {"q": "sw"}},
        "CREATE": {"data": {"name": "sw-2"}},
        "UPDATE": {"objectid": device["id"], "data": {"name": "renamed"}},
        "DELETE": {"objectid": device["id"]},
        "RUN": {"objectid": "anything"},
    }[method]
    answer = await ws_call(bus, role_tokens[role], method, DEVICE, namespace=ns, **fields)
    if expected == OK:
        ok(answer)
        return
    refused(answer, expected)
    assert await admin(bus, "LIST", DEVICE, namespace=ns) == [device]


@pytest.mark.parametrize(("role", "method", "expected"), table(USER_TABLE))
async def test_builtin_role_on_auth_user(
    bus: Served, role_tokens: dict[str, str], role: str, method: str, expected: str
) -> None:
    """Only admin may LIST, OPEN, CREATE, UPDATE or DELETE users (auth/user has no INDEX or RUN)."""
    target = unique("target")
    await admin(bus, "CREATE", USER, data={"username": target, "password": PASSWORD, "roles": ["viewer"]})
    by_method: dict[str, dict[str, Any]] = {
        "LIST": {},
        "OPEN": {"objectid": target},
        "INDEX": {},
        "CREATE": {"data": {"username": unique("new"), "password": PASSWORD, "roles": ["admin"]}},
        "UPDATE": {"objectid": target, "data": {"roles": ["admin"]}},
        "DELETE": {"objectid": target},
        "RUN": {"objectid": target},
    }
    fields = by_method[method]
    answer = await ws_call(bus, role_tokens[role], method, USER, **fields)
    if expected == OK:
        ok(answer)
        return
    refused(answer, expected)
    assert (await admin(bus, "OPEN", USER, objectid=target))["roles"] == ["viewer"]


@pytest.mark.parametrize(
    ("role", "endpoint", "method", "data"),
    [
        ("operator", "auth/role", "CREATE", {"id": "sneaky", "rules": [{"endpoints": "*"}]}),
        ("viewer", "auth/role", "LIST", None),
        ("viewer", "auth/apikey", "CREATE", {}),
        ("viewer", "auth/apikey", "LIST", None),
    ],
    ids=["operator-creates-role", "viewer-lists-roles", "viewer-creates-apikey", "viewer-lists-apikeys"],
)
async def test_builtin_roles_are_kept_from_admin_endpoints(
    bus: Served, role_tokens: dict[str, str], role: str, endpoint: str, method: str, data: Any
) -> None:
    """operator may not touch auth/role; viewer may not read roles nor make or list API keys."""
    refused(await ws_call(bus, role_tokens[role], method, endpoint, data=data), DENIED)


async def test_viewer_may_refresh_and_log_out(bus: Served) -> None:
    """A viewer may refresh its own token and log out (revoke it)."""
    _, token = await add_user(bus, ["viewer"])
    fresh = ok(await ws_call(bus, token, "RUN", "auth/token", objectid="refresh"))
    ok(await ws_call(bus, fresh["token"], "DELETE", "auth/token", objectid=fresh["id"]))
    refused(await ws_call(bus, fresh["token"], "LIST"), "AUTH_FAILED")
    ok(await ws_call(bus, token, "LIST"))


async def test_builtin_roles_are_listed_and_cannot_be_redefined(bus: Served) -> None:
    """LIST auth/role shows admin, operator and viewer as built-in; CREATE or DELETE of one is CONFLICT."""
    roles = {role["id"]: role for role in await admin(bus, "LIST", "auth/role")}
    assert all(roles[name]["builtin"] for name in ROLES)
    refused(await ws_call(bus, bus.token, "CREATE", "auth/role", data={"id": "viewer", "rules": []}), "CONFLICT")
    refused(await ws_call(bus, bus.token, "DELETE", "auth/role", objectid="admin"), "CONFLICT")


# -- roles defined as data ----------------------------------------------------------------------


async def test_custom_role_is_limited_to_its_endpoints_methods_and_namespaces(bus: Served) -> None:
    """A role with a rule on ``inventory/*`` for LIST, OPEN and UPDATE in ``site-a-*`` allows just that."""
    role = unique("site-ops")
    rule = {"endpoints": "inventory/*", "methods": ["LIST", "OPEN", "UPDATE"], "namespaces": ["site-a-*"]}
    shown = await admin(bus, "CREATE", "auth/role", data={"id": role, "rules": [rule], "permissions": []})
    assert shown["builtin"] is False and shown["rules"][0]["namespaces"] == ["site-a-*"]
    _, token = await add_user(bus, [role])
    site_a, site_b = unique("site-a"), unique("site-b")
    mine = await admin(bus, "CREATE", DEVICE, namespace=site_a, data={"name": "a"})
    other = await admin(bus, "CREATE", DEVICE, namespace=site_b, data={"name": "b"})

    assert ok(await ws_call(bus, token, "LIST", DEVICE, namespace=site_a)) == [mine]
    ok(await ws_call(bus, token, "OPEN", DEVICE, namespace=site_a, objectid=mine["id"]))
    ok(await ws_call(bus, token, "UPDATE", DEVICE, namespace=site_a, objectid=mine["id"], data={"name": "a2"}))
    refused(await ws_call(bus, token, "CREATE", DEVICE, namespace=site_a, data={"name": "x"}), DENIED)
    refused(await ws_call(bus, token, "DELETE", DEVICE, namespace=site_a, objectid=mine["id"]), DENIED)
    refused(await ws_call(bus, token, "INDEX", DEVICE, namespace=site_a), DENIED)
    refused(await ws_call(bus, token, "LIST", DEVICE, namespace=site_b), DENIED)
    refused(await ws_call(bus, token, "OPEN", DEVICE, namespace=site_b, objectid=other["id"]), DENIED)
    refused(await ws_call(bus, token, "LIST", "system/endpoint"), DENIED)
    refused(await ws_call(bus, token, "LIST", USER), DENIED)


async def test_changing_a_role_applies_to_tokens_already_issued(bus: Served) -> None:
    """UPDATE of a role takes effect at once for its users' existing tokens; DELETE of it takes its rights away."""
    role, ns = unique("grow"), unique("ns")
    await admin(bus, "CREATE", "auth/role", data={"id": role, "rules": [{"endpoints": DEVICE, "methods": ["LIST"]}]})
    _, token = await add_user(bus, [role])
    refused(await ws_call(bus, token, "CREATE", DEVICE, namespace=ns, data={"name": "x"}), DENIED)
    rules = [{"endpoints": DEVICE, "methods": ["LIST", "CREATE"]}]
    await admin(bus, "UPDATE", "auth/role", objectid=role, data={"rules": rules})
    ok(await ws_call(bus, token, "CREATE", DEVICE, namespace=ns, data={"name": "x"}))
    await admin(bus, "DELETE", "auth/role", objectid=role)
    refused(await ws_call(bus, token, "LIST", DEVICE, namespace=ns), DENIED)


async def test_a_deny_rule_wins_over_another_roles_allow(bus: Served) -> None:
    """A user with operator and a role denying DELETE on inventory/device may do all but DELETE there."""
    role, ns = unique("no-delete"), unique("ns")
    rule = {"endpoints": DEVICE, "methods": ["DELETE"], "deny": True}
    await admin(bus, "CREATE", "auth/role", data={"id": role, "rules": [rule]})
    _, token = await add_user(bus, ["operator", role])
    device = ok(await ws_call(bus, token, "CREATE", DEVICE, namespace=ns, data={"name": "x"}))
    ok(await ws_call(bus, token, "UPDATE", DEVICE, namespace=ns, objectid=device["id"], data={"name": "y"}))
    refused(await ws_call(bus, token, "DELETE", DEVICE, namespace=ns, objectid=device["id"]), DENIED)


@pytest.mark.parametrize(
    "data",
    [
        {"id": "bad-rule", "rules": [{"methods": ["LIST"]}]},
        {"id": "bad-method", "rules": [{"endpoints": "*", "methods": ["FETCH"]}]},
        {"id": "bad-namespaces", "rules": [{"endpoints": "*", "namespaces": "site-a"}]},
        {"id": "bad-permissions", "rules": [], "permissions": "demo.*"},
        {"rules": []},
    ],
    ids=["rule-without-endpoints", "unknown-method", "namespaces-not-a-list", "permissions-not-a-list", "no-id"],
)
async def test_malformed_role_is_invalid_data(bus: Served, data: dict[str, Any]) -> None:
    """A malformed role definition answers INVALID_DATA and defines nothing."""
    refused(await ws_call(bus, bus.token, "CREATE", "auth/role", data=data), "INVALID_DATA")
    if "id" in data:
        refused(await ws_call(bus, bus.token, "OPEN", "auth/role", objectid=data["id"]), "DO_NOT_EXIST")


# -- named RUN permissions ----------------------------------------------------------------------


async def test_run_needing_a_permission_is_refused_without_it(bus: Served, role_tokens: dict[str, str]) -> None:
    """An operator may RUN on demo/thing, but RUN purge (needs demo.purge) answers PERMISSION_DENIED."""
    token = role_tokens["operator"]
    assert ok(await ws_call(bus, token, "RUN", THING, objectid="count"))["ran"] == "count"
    refused(await ws_call(bus, token, "RUN", THING, objectid="purge"), DENIED)


async def test_run_needing_a_permission_is_allowed_with_a_role_granting_it(bus: Served) -> None:
    """A user with roles [operator, purger] (purger grants ``demo.*``) may RUN purge."""
    purger = unique("purger")
    await admin(bus, "CREATE", "auth/role", data={"id": purger, "rules": [], "permissions": ["demo.*"]})
    name, token = await add_user(bus, ["operator", purger])
    assert ok(await ws_call(bus, token, "RUN", THING, objectid="purge")) == {"ran": "purge", "by": name}


async def test_permission_without_a_rule_allowing_run_is_not_enough(bus: Served) -> None:
    """A viewer with a role granting ``demo.*`` but no rule allowing RUN is still refused RUN purge."""
    purger = unique("purger")
    await admin(bus, "CREATE", "auth/role", data={"id": purger, "rules": [], "permissions": ["demo.*"]})
    _, token = await add_user(bus, ["viewer", purger])
    refused(await ws_call(bus, token, "RUN", THING, objectid="purge"), DENIED)


async def test_admin_has_every_permission(bus: Served) -> None:
    """admin may RUN purge: it has every permission."""
    assert (await admin(bus, "RUN", THING, objectid="purge"))["by"] == "admin"
