"""The command line of auth: ``flowbus user add/passwd`` against a running bus's data, ``flowbus token``,
and ``--insecure-no-auth``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.endpoints.helpers import DEVICE, DEVICES, PASSWORD, admin, call, http, login, ok, refused, unique, ws_call
from tests.support import ADMIN_PASSWORD, ROOT, Served, serving

T = TypeVar("T")


async def poll(make: Callable[[], Awaitable[T]], until: Callable[[T], bool], tries: int = 300) -> T:
    """Call ``make`` until its answer satisfies ``until`` (at most ``tries`` times, 0.05 s apart); return the last."""
    answer = await make()
    for _ in range(tries):
        if until(answer):
            break
        await asyncio.sleep(0.05)
        answer = await make()
    return answer


def flowbus(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flowbus ARGS`` (with FLOWBUS_PASSWORD if given); return the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env["PYTHONPATH"] = str(ROOT)
    if password is not None:
        env["FLOWBUS_PASSWORD"] = password
    command = [sys.executable, "-m", "flowbus", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


# -- flowbus user ---------------------------------------------------------------------------------


async def test_user_add_while_the_bus_runs(bus: Served) -> None:
    """`flowbus user add NAME --role operator` on a running bus's data makes a user who logs in with the role."""
    name = unique("cli")
    done = flowbus("user", "add", name, "--role", "operator", "--data", str(bus.data), password=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert f"user {name}: added" in done.stdout
    token = ok(await login(bus, name))["token"]
    ok(await ws_call(bus, token, "CREATE", DEVICE, namespace=unique("ns"), data={"name": "x"}))
    shown = await admin(bus, "OPEN", "auth/user", objectid=name)
    assert (shown["roles"], shown["namespaces"]) == (["operator"], None)


async def test_user_add_defaults_to_viewer_and_takes_namespaces(bus: Served) -> None:
    """Without --role a user is a viewer; --namespace (repeatable) limits it."""
    name, ns = unique("cli"), unique("site")
    done = flowbus(
        "user", "add", name, "--namespace", ns, "--namespace", "b", "--data", str(bus.data), password=PASSWORD
    )
    assert done.returncode == 0, done.stderr
    token = ok(await login(bus, name))["token"]
    ok(await ws_call(bus, token, "LIST", DEVICE, namespace=ns))
    refused(await ws_call(bus, token, "CREATE", DEVICE, namespace=ns, data={"name": "x"}), "PERMISSION_DENIED")
    refused(await ws_call(bus, token, "LIST", DEVICE, namespace=unique("other")), "PERMISSION_DENIED")
    assert (await admin(bus, "OPEN", "auth/user", objectid=name))["roles"] == ["viewer"]


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["add", "admin"], PASSWORD, "exists"),
        (["add", "{new}"], "short", "at least 8"),
        (["add", "{new}", "--role", "no-such-role"], PASSWORD, "no-such-role"),
        (["passwd", "{new}"], PASSWORD, "No user"),
    ],
    ids=["add-existing", "add-short-password", "add-unknown-role", "passwd-unknown-user"],
)
def test_user_refusals_exit_1(bus: Served, args: list[str], password: str, message: str) -> None:
    """`flowbus user` exits 1 with the reason for a taken name, short password, unknown role or unknown user."""
    name = unique("cli")
    done = flowbus("user", *[a.replace("{new}", name) for a in args], "--data", str(bus.data), password=password)
    assert done.returncode == 1
    assert message in done.stderr
    ok(bus.login("admin", ADMIN_PASSWORD))


async def test_user_passwd_while_the_bus_runs(bus: Served) -> None:
    """``flowbus user passwd NAME`` on a running bus: the new password logs in, the old one no longer does."""
    name = unique("cli")
    assert flowbus("user", "add", name, "--data", str(bus.data), password=PASSWORD).returncode == 0
    done = flowbus("user", "passwd", name, "--data", str(bus.data), password="the-new-password")
    assert done.returncode == 0, done.stderr
    assert f"user {name}: password changed" in done.stdout
    ok(await login(bus, name, "the-new-password"))
    refused(await login(bus, name, PASSWORD), "AUTH_FAILED")


async def test_user_passwd_revokes_the_users_tokens_on_the_running_bus(bus: Served) -> None:
    """`flowbus user passwd` revokes the user's tokens on the running bus too (polled in a bounded loop)."""
    name = unique("cli")
    assert flowbus("user", "add", name, "--data", str(bus.data), password=PASSWORD).returncode == 0
    token = ok(await login(bus, name))["token"]
    async with bus.connect(token=token) as ws:
        ok(await call(ws, "LIST"))
        assert flowbus("user", "passwd", name, "--data", str(bus.data), password="the-new-password").returncode == 0
        answer = await poll(lambda: call(ws, "LIST"), until=lambda answer: not answer["success"])
    refused(answer, "AUTH_FAILED")
    refused(await ws_call(bus, token, "LIST"), "AUTH_FAILED")
    ok(await ws_call(bus, ok(await login(bus, name, "the-new-password"))["token"], "LIST"))


async def test_user_passwd_then_login_revokes_the_old_tokens_at_once(bus: Served) -> None:
    """A login after `flowbus user passwd` makes the running bus refuse the user's older tokens at once."""
    name = unique("cli")
    assert flowbus("user", "add", name, "--data", str(bus.data), password=PASSWORD).returncode == 0
    old = ok(await login(bus, name))["token"]
    ok(await ws_call(bus, old, "LIST"))
    assert flowbus("user", "passwd", name, "--data", str(bus.data), password="the-new-password").returncode == 0
    new = ok(await login(bus, name, "the-new-password"))["token"]
    refused(await ws_call(bus, old, "LIST"), "AUTH_FAILED")
    ok(await ws_call(bus, new, "LIST"))


async def test_user_added_by_the_command_line_is_known_to_the_running_bus(bus: Served) -> None:
    """A user added by `flowbus user add` is listed by the running bus before logging in, and may get an API key."""
    name = unique("cli")
    assert flowbus("user", "add", name, "--data", str(bus.data), password=PASSWORD).returncode == 0

    async def names() -> set[str]:
        return {user["id"] for user in await admin(bus, "LIST", "auth/user", parameters={"limit": 1000})}

    assert name in await poll(names, until=lambda found: name in found)
    key = (await admin(bus, "CREATE", "auth/apikey", data={"owner": name}))["key"]
    ok(await ws_call(bus, key, "LIST"))


# -- flowbus token --------------------------------------------------------------------------------


async def test_token_prints_a_working_token(bus: Served) -> None:
    """``flowbus token --user admin --url URL`` (password from FLOWBUS_PASSWORD) prints a token that works."""
    done = flowbus("token", "--user", "admin", "--url", bus.ws_url, password=ADMIN_PASSWORD)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    status, _, envelope = await http(bus, "GET", DEVICES, headers={"Flow-Auth-Token": token})
    assert status == 200, envelope


def test_token_with_a_wrong_password_exits_1(bus: Served) -> None:
    """``flowbus token`` with a wrong password prints AUTH_FAILED on stderr, nothing on stdout, and exits 1."""
    done = flowbus("token", "--user", "admin", "--url", bus.ws_url, password="not-the-password")
    assert done.returncode == 1
    assert done.stdout == "" and "AUTH_FAILED" in done.stderr


# -- --insecure-no-auth -----------------------------------------------------------------------------


@pytest.fixture(params=["flag", "env"])
def open_bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """A bus without authentication, by ``--insecure-no-auth`` or by ``FLOWBUS_NO_AUTH=1``."""
    args, env = (["--insecure-no-auth"], None) if request.param == "flag" else ([], {"FLOWBUS_NO_AUTH": "1"})
    with serving(tmp_path, *args, env=env) as served:
        yield served


async def test_insecure_no_auth_lets_calls_in_and_warns(open_bus: Served) -> None:
    """Without authentication every call gets in without credentials, and the bus prints a WARNING line."""
    assert any(line.startswith("WARNING") and "insecure-no-auth" in line for line in open_bus.output)
    ns = unique("ns")
    ok(await ws_call(open_bus, None, "CREATE", DEVICE, namespace=ns, data={"name": "x"}))
    status, _, envelope = await http(open_bus, "GET", DEVICES, headers={"Flow-Request-Namespace": ns})
    assert status == 200 and len(envelope["data"]) == 1
    ok(await ws_call(open_bus, None, "LIST", "auth/user"))


def test_authentication_is_on_by_default(bus: Served) -> None:
    """A bus started without the flag prints no warning about running without authentication."""
    assert not any("WARNING" in line for line in bus.output)
