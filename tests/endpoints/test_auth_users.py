"""Users: the bootstrap admin, passwords (never returned, never logged, never stored plain), disabling."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.endpoints.helpers import PASSWORD, add_user, admin, basic, call, http, login, ok, refused, unique, ws_call
from tests.support import ADMIN_PASSWORD, Served, serve, serving

GENERATED = re.compile(r"Created user 'admin' with password: (\S+)")


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The module's bus logs at debug level, so "never logged" is checked at the most talkative level."""
    with serving(tmp_path_factory.mktemp("users"), "--log-level", "debug") as served:
        yield served


def data_files(data: Path) -> bytes:
    """Every byte the bus keeps in its data directory (the database, its WAL, the secret)."""
    return b"".join(path.read_bytes() for path in sorted(data.iterdir()) if path.is_file())


# -- bootstrap --------------------------------------------------------------------------------


def test_fresh_data_dir_without_admin_password_prints_a_generated_one_once(tmp_path: Path) -> None:
    """Without FLOWBUS_ADMIN_PASSWORD a fresh bus prints a working admin password once, never on a later start."""
    first = serve(tmp_path, env={"FLOWBUS_ADMIN_PASSWORD": ""})
    try:
        printed = [m[1] for line in first.output if (m := GENERATED.search(line))]
        assert len(printed) == 1
        password = printed[0]
        assert len(password) >= 16
        assert any("flowbus user passwd admin" in line for line in first.output)
        assert first.token is None  # the password of the tests is not the admin's
        ok(first.login("admin", password))
    finally:
        first.stop()
    assert password not in first.log()
    second = serve(tmp_path, env={"FLOWBUS_ADMIN_PASSWORD": ""})
    try:
        assert not any(GENERATED.search(line) or password in line for line in second.output)
        ok(second.login("admin", password))
    finally:
        second.stop()
    assert not any(GENERATED.search(line) for line in second.output)


def test_admin_password_from_the_environment_is_not_printed(bus: Served) -> None:
    """With FLOWBUS_ADMIN_PASSWORD set the bus prints no password (and the admin logs in with it)."""
    assert bus.token is not None
    assert not any(GENERATED.search(line) or ADMIN_PASSWORD in line for line in bus.output)


async def test_admin_password_from_the_environment_is_only_for_the_first_start(tmp_path: Path) -> None:
    """FLOWBUS_ADMIN_PASSWORD only seeds an empty data directory; a later start does not reset a changed one."""
    first = serve(tmp_path)
    try:
        assert first.token is not None
        await admin(first, "UPDATE", "auth/user", objectid="admin", data={"password": "changed-password"})
    finally:
        first.stop()
    second = serve(tmp_path)
    try:
        assert second.token is None
        refused(second.login("admin", ADMIN_PASSWORD), "AUTH_FAILED")
        ok(second.login("admin", "changed-password"))
    finally:
        second.stop()


# -- passwords ----------------------------------------------------------------------------------


async def test_passwords_are_never_returned(bus: Served) -> None:
    """No answer about users carries the password or its hash: CREATE, LIST, OPEN, UPDATE, DELETE."""
    name = unique("user")
    data = {"username": name, "password": PASSWORD, "roles": ["viewer"]}
    answers = [
        await admin(bus, "CREATE", "auth/user", data=data),
        await admin(bus, "OPEN", "auth/user", objectid=name),
        await admin(bus, "UPDATE", "auth/user", objectid=name, data={"password": "another-password"}),
        *await admin(bus, "LIST", "auth/user", parameters={"limit": 1000}),
        await admin(bus, "DELETE", "auth/user", objectid=name),
    ]
    _, _, over_http = await http(bus, "GET", f"/api/auth/auth/user/{name}", headers=basic("admin", ADMIN_PASSWORD))
    for answer in answers:
        assert "password_hash" not in answer and "password" not in answer, answer
        assert "scrypt" not in str(answer)
    assert set(answers[0]) == {"id", "username", "roles", "namespaces", "disabled", "created", "updated", "version"}
    refused(over_http, "DO_NOT_EXIST")


async def test_passwords_are_never_logged_nor_stored_plain(bus: Served) -> None:
    """Passwords of logins, HTTP Basic and auth/user are neither in the debug-level log nor in the data directory."""
    name = unique("user")
    secrets = [f"first-{unique('pw')}", f"second-{unique('pw')}", f"wrong-{unique('pw')}"]
    await add_user(bus, ["viewer"], name=name, password=secrets[0])
    await admin(bus, "UPDATE", "auth/user", objectid=name, data={"password": secrets[1]})
    ok(await login(bus, name, secrets[1]))
    refused(await login(bus, name, secrets[2]), "AUTH_FAILED")
    ok(bus.login(name, secrets[1]))
    assert (await http(bus, "GET", "/api/inventory/inventory/device/", headers=basic(name, secrets[1])))[0] == 200
    assert (await http(bus, "GET", "/api/inventory/inventory/device/", headers=basic(name, secrets[2])))[0] == 401
    log, stored = bus.log(), data_files(bus.data)
    assert "AUTH_FAILED" in log  # the failures were logged, without the passwords
    for secret in secrets:
        assert secret not in log
        assert secret.encode() not in stored


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"password": "short"}, "password"),
        ({"password": 12345678}, "password"),
        ({"roles": ["no-such-role"]}, "roles"),
        ({"roles": "admin"}, "roles"),
        ({"namespaces": "site-a"}, "namespaces"),
        ({"username": "has space"}, "username"),
        ({"username": "x" * 65}, "username"),
    ],
    ids=["short-password", "password-not-string", "unknown-role", "roles-not-list", "namespaces-not-list",
         "bad-username", "long-username"],
)  # fmt: skip
async def test_bad_user_fields_are_invalid_data(bus: Served, data: dict[str, object], field: str) -> None:
    """CREATE auth/user with a bad field answers INVALID_DATA naming the field, and creates no user."""
    name = unique("user")
    full = {"username": name, "password": PASSWORD, "roles": ["viewer"], **data}
    answer = refused(await ws_call(bus, bus.token, "CREATE", "auth/user", data=full), "INVALID_DATA")
    assert field in answer["message"]
    refused(await ws_call(bus, bus.token, "OPEN", "auth/user", objectid=name), "DO_NOT_EXIST")


async def test_username_taken_is_conflict(bus: Served) -> None:
    """CREATE auth/user with a name taken answers CONFLICT."""
    data = {"username": "admin", "password": PASSWORD, "roles": ["viewer"]}
    refused(await ws_call(bus, bus.token, "CREATE", "auth/user", data=data), "CONFLICT")


@pytest.mark.parametrize(
    "change",
    [{"password": "a-new-password"}, {"roles": ["viewer"]}, {"namespaces": ["elsewhere"]}, {"disabled": True}],
    ids=["password", "roles", "namespaces", "disabled"],
)
async def test_changing_a_user_revokes_its_tokens(bus: Served, change: dict[str, object]) -> None:
    """Changing a user's password, roles, namespaces or disabling it revokes the tokens it has."""
    name, token = await add_user(bus, ["operator"])
    async with bus.connect(token=token) as ws:
        ok(await call(ws, "LIST"))
        await admin(bus, "UPDATE", "auth/user", objectid=name, data=change)
        refused(await call(ws, "LIST"), "AUTH_FAILED")


async def test_disabled_user_cannot_log_in_nor_use_its_api_keys(bus: Served) -> None:
    """A disabled user's logins answer AUTH_FAILED and its API keys are refused; enabling it again restores both."""
    name, token = await add_user(bus, ["viewer"])
    key = (await admin(bus, "CREATE", "auth/apikey", data={"owner": name}))["key"]
    ok(await ws_call(bus, key, "LIST"))
    await admin(bus, "UPDATE", "auth/user", objectid=name, data={"disabled": True})
    refused(await login(bus, name), "AUTH_FAILED")
    refused(await ws_call(bus, key, "LIST"), "AUTH_FAILED")
    await admin(bus, "UPDATE", "auth/user", objectid=name, data={"disabled": False})
    ok(await login(bus, name))
    ok(await ws_call(bus, key, "LIST"))


async def test_deleted_user_loses_tokens_and_api_keys(bus: Served) -> None:
    """DELETE auth/user refuses the user's tokens and API keys at once and its logins."""
    name, token = await add_user(bus, ["viewer"])
    key = (await admin(bus, "CREATE", "auth/apikey", data={"owner": name}))["key"]
    ok(await ws_call(bus, key, "LIST"))
    await admin(bus, "DELETE", "auth/user", objectid=name)
    refused(await ws_call(bus, token, "LIST"), "AUTH_FAILED")
    refused(await ws_call(bus, key, "LIST"), "AUTH_FAILED")
    refused(await login(bus, name), "AUTH_FAILED")
