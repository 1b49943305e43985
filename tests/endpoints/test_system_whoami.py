"""system/whoami: the caller's identity and, per endpoint, the methods it may call, as the bus's
authorizer decides them (its roles, its namespaces, public methods)."""

from __future__ import annotations

from typing import Any

from tests.endpoints.helpers import DEVICE, add_user, admin, ok, refused, unique, ws_call
from tests.support import Served

WHOAMI = "system/whoami"
READ = ["LIST", "OPEN", "INDEX"]


async def whoami(bus: Served, token: str | None, namespace: str = "") -> Any:
    return ok(await ws_call(bus, token, "RUN", WHOAMI, objectid="me", namespace=namespace))


async def test_an_admin_may_call_every_method_of_every_endpoint(bus: Served) -> None:
    me = await whoami(bus, bus.token)
    assert (me["subject"], me["roles"], me["namespaces"], me["namespace"]) == ("admin", ["admin"], None, "")
    catalog = ok(await ws_call(bus, bus.token, "LIST", "system/endpoint", parameters={"limit": 1000}))
    assert me["endpoints"] == {e["name"]: e["methods"] for e in catalog}
    assert me["endpoints"][WHOAMI] == ["RUN"]


async def test_a_viewer_is_told_what_it_may_read_and_nothing_it_may_not(bus: Served) -> None:
    name, token = await add_user(bus, ["viewer"])
    me = await whoami(bus, token)
    assert (me["subject"], me["roles"], me["namespaces"]) == (name, ["viewer"], None)
    endpoints = me["endpoints"]
    assert endpoints[DEVICE] == ["LIST", "OPEN", "INDEX"]
    assert endpoints["flows/flow"] == READ
    assert endpoints["system/endpoint"] == ["LIST", "OPEN"]
    # its own tokens: list them, log in (public), log out and refresh
    assert endpoints["auth/token"] == ["LIST", "CREATE", "DELETE", "RUN"]
    assert endpoints[WHOAMI] == ["RUN"]
    for closed in ("auth/user", "auth/role", "auth/apikey", "flows/command", "flows/event"):
        assert closed not in endpoints
    # the answer is the authorizer's: what it lists is allowed, and what it leaves out is refused
    ok(await ws_call(bus, token, "LIST", DEVICE))
    refused(await ws_call(bus, token, "CREATE", DEVICE, data={"name": "no"}), "PERMISSION_DENIED")
    refused(await ws_call(bus, token, "LIST", "auth/user"), "PERMISSION_DENIED")


async def test_a_role_defined_as_data_and_a_namespace_limit_are_answered_for(bus: Served) -> None:
    role = unique("devices-only")
    rules = [
        {"endpoints": "inventory/*", "methods": ["LIST", "UPDATE"]},
        {"endpoints": WHOAMI, "methods": ["RUN"]},
    ]
    await admin(bus, "CREATE", "auth/role", data={"id": role, "rules": rules})
    site = unique("site")
    _, token = await add_user(bus, [role], [site])
    me = await whoami(bus, token, namespace=site)
    assert me["namespaces"] == [site]
    assert me["namespace"] == site
    # and the login, which is public
    assert me["endpoints"] == {DEVICE: ["LIST", "UPDATE"], WHOAMI: ["RUN"], "auth/token": ["CREATE"]}
    # in a namespace it may not use: nothing at all (asking about itself is refused too)
    refused(await ws_call(bus, token, "RUN", WHOAMI, objectid="me", namespace="elsewhere"), "PERMISSION_DENIED")


async def test_a_role_without_the_right_to_ask_is_refused_and_other_operations_do_not_exist(bus: Served) -> None:
    role = unique("no-whoami")
    await admin(bus, "CREATE", "auth/role", data={"id": role, "rules": [{"endpoints": "inventory/*"}]})
    _, token = await add_user(bus, [role])
    refused(await ws_call(bus, token, "RUN", WHOAMI, objectid="me"), "PERMISSION_DENIED")
    refused(await ws_call(bus, bus.token, "RUN", WHOAMI, objectid="someone-else"), "DO_NOT_EXIST")
    refused(await ws_call(bus, None, "RUN", WHOAMI, objectid="me"), "AUTH_REQUIRED")
