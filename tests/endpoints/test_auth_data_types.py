"""Wrong types inside auth data are INVALID_DATA naming the field, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.endpoints.helpers import PASSWORD, admin, http, ok, refused, unique, ws_call
from tests.support import Served

ROLE, APIKEY, USER, TOKEN = "auth/role", "auth/apikey", "auth/user", "auth/token"


def rule(**changes: Any) -> dict[str, Any]:
    """A valid rule, with ``changes``."""
    return {"endpoints": "inventory/*", "methods": ["LIST"], **changes}


BAD_ROLES = [
    ({"id": [1]}, "id"),
    ({"id": 5}, "id"),
    ({"rules": "all"}, "rules"),
    ({"rules": [5]}, "rules.0"),
    ({"rules": [{"methods": ["LIST"]}]}, "rules.0.endpoints"),
    ({"rules": [rule(endpoints=["inventory/*"])]}, "rules.0.endpoints"),
    ({"rules": [rule(methods=[5])]}, "rules.0.methods.0"),
    ({"rules": [rule(methods="LIST")]}, "rules.0.methods"),
    ({"rules": [rule(namespaces=[1])]}, "rules.0.namespaces.0"),
    ({"rules": [rule(deny="yes")]}, "rules.0.deny"),
    ({"permissions": [{"x": 1}]}, "permissions.0"),
]


@pytest.mark.parametrize(("data", "field"), BAD_ROLES, ids=[field for _, field in BAD_ROLES])
async def test_role_create_wrong_types(bus: Served, data: dict[str, Any], field: str) -> None:
    """auth/role CREATE with a wrong type inside is INVALID_DATA naming the field; no role is made."""
    name = unique("role")
    answer = refused(await ws_call(bus, bus.token, "CREATE", ROLE, data={"id": name, **data}), "INVALID_DATA")
    assert f"'{field}'" in answer["message"], answer
    listed = [row["id"] for row in await admin(bus, "LIST", ROLE, parameters={"limit": 1000})]
    assert name not in listed


@pytest.mark.parametrize(("data", "field"), BAD_ROLES[2:], ids=[field for _, field in BAD_ROLES[2:]])
async def test_role_update_wrong_types(bus: Served, data: dict[str, Any], field: str) -> None:
    """auth/role UPDATE with a wrong type inside is INVALID_DATA, and the role keeps its rules."""
    name = unique("role")
    before = await admin(bus, "CREATE", ROLE, data={"id": name, "rules": [rule()]})
    answer = refused(await ws_call(bus, bus.token, "UPDATE", ROLE, objectid=name, data=data), "INVALID_DATA")
    assert f"'{field}'" in answer["message"], answer
    assert await admin(bus, "OPEN", ROLE, objectid=name) == before


@pytest.mark.parametrize(
    ("data", "field"),
    [({"owner": ["x"]}, "owner"), ({"owner": 1}, "owner"), ({"label": 5}, "label"), ({"label": ["a"]}, "label")],
    ids=["owner-list", "owner-number", "label-number", "label-list"],
)
async def test_apikey_create_wrong_types(bus: Served, data: dict[str, Any], field: str) -> None:
    """auth/apikey CREATE with a wrong type is INVALID_DATA naming the field; no key is made."""
    before = len(await admin(bus, "LIST", APIKEY, parameters={"limit": 1000}))
    answer = refused(await ws_call(bus, bus.token, "CREATE", APIKEY, data=data), "INVALID_DATA")
    assert f"'{field}'" in answer["message"], answer
    assert len(await admin(bus, "LIST", APIKEY, parameters={"limit": 1000})) == before


BAD_USERS = [
    ({"username": ["x"]}, "username"),
    ({"password": 12345678}, "password"),
    ({"roles": "viewer"}, "roles"),
    ({"roles": [1]}, "roles.0"),
    ({"namespaces": "a"}, "namespaces"),
    ({"namespaces": [["a"]]}, "namespaces.0"),
    ({"disabled": "no"}, "disabled"),
]


@pytest.mark.parametrize(("data", "field"), BAD_USERS, ids=[field for _, field in BAD_USERS])
async def test_user_create_wrong_types(bus: Served, data: dict[str, Any], field: str) -> None:
    """auth/user CREATE with a wrong type is INVALID_DATA naming the field; no user is made."""
    name = unique("user")
    user = {"username": name, "password": PASSWORD, **data}
    answer = refused(await ws_call(bus, bus.token, "CREATE", USER, data=user), "INVALID_DATA")
    assert f"'{field}'" in answer["message"], answer
    refused(await ws_call(bus, bus.token, "OPEN", USER, objectid=name), "DO_NOT_EXIST")


@pytest.mark.parametrize(("data", "field"), BAD_USERS[1:], ids=[field for _, field in BAD_USERS[1:]])
async def test_user_update_wrong_types(bus: Served, data: dict[str, Any], field: str) -> None:
    """auth/user UPDATE with a wrong type is INVALID_DATA naming the field, and the user is unchanged."""
    name = unique("user")
    before = ok(await ws_call(bus, bus.token, "CREATE", USER, data={"username": name, "password": PASSWORD}))
    answer = refused(await ws_call(bus, bus.token, "UPDATE", USER, objectid=name, data=data), "INVALID_DATA")
    assert f"'{field}'" in answer["message"], answer
    assert ok(await ws_call(bus, bus.token, "OPEN", USER, objectid=name)) == before


@pytest.mark.parametrize("data", [{"username": ["x"], "password": "p"}, {"username": "x", "password": 5}])
async def test_token_create_wrong_types(bus: Served, data: dict[str, Any]) -> None:
    """auth/token CREATE (login) with a non-string username or password is INVALID_DATA."""
    refused(await ws_call(bus, None, "CREATE", TOKEN, data=data), "INVALID_DATA")


async def test_role_wrong_types_over_http(bus: Served) -> None:
    """Over HTTP, a role with a wrong type inside answers 422 INVALID_DATA naming the field."""
    body = {"id": unique("role"), "rules": [rule(methods=[5])]}
    status, _, envelope = await http(
        bus, "POST", "/api/auth/auth/role/", body=body, headers={"Authorization": f"Bearer {bus.token}"}
    )
    assert (status, envelope["errorcode"]) == (422, "INVALID_DATA"), envelope
    assert "'rules.0.methods.0'" in envelope["message"]
