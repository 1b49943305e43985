"""Failed logins are limited per username and per client address, for token logins and HTTP Basic alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.endpoints.helpers import DEVICES, PASSWORD, TOKENS, add_user, basic, http, login, ok, refused, unique
from tests.support import Served, serving

PER_USER = 3
PER_ADDRESS = 4
WINDOW = 60


@pytest.fixture(scope="module")
def user_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus allowing 3 failed logins per username (and plenty per address) a minute."""
    env = {"FLOWBUS_LOGIN_FAILURES_PER_USER": str(PER_USER), "FLOWBUS_LOGIN_FAILURES_PER_ADDRESS": "1000"}
    with serving(tmp_path_factory.mktemp("per-user"), env=env) as served:
        yield served


@pytest.fixture
def address_limited(tmp_path: Path) -> Iterator[Served]:
    """A bus of this test's own allowing 4 failed logins per client address (and plenty per username)."""
    env = {"FLOWBUS_LOGIN_FAILURES_PER_USER": "1000", "FLOWBUS_LOGIN_FAILURES_PER_ADDRESS": str(PER_ADDRESS)}
    with serving(tmp_path, env=env) as served:
        yield served


def assert_rate_limited(answer: dict[str, object]) -> None:
    refused(answer, "RATE_LIMITED")
    retry = answer["retryAfter"]
    assert isinstance(retry, int) and 1 <= retry <= WINDOW + 1


async def test_too_many_failed_logins_for_a_username_are_rate_limited(user_limited: Served) -> None:
    """After N failed logins for a username its logins answer RATE_LIMITED with retryAfter; others still log in."""
    name, _ = await add_user(user_limited, ["viewer"])
    other, _ = await add_user(user_limited, ["viewer"])
    for _ in range(PER_USER):
        refused(await login(user_limited, name, "wrong-password"), "AUTH_FAILED")
    assert_rate_limited(await login(user_limited, name, PASSWORD))
    assert_rate_limited(await login(user_limited, name, "wrong-password"))
    ok(await login(user_limited, other))


async def test_rate_limited_login_over_http_has_retry_after(user_limited: Served) -> None:
    """Over HTTP a rate-limited login answers 429 with a Retry-After header matching retryAfter."""
    name, _ = await add_user(user_limited, ["viewer"])
    for _ in range(PER_USER):
        status, _, _ = await http(user_limited, "POST", TOKENS, body={"username": name, "password": "wrong"})
        assert status == 401
    status, headers, envelope = await http(user_limited, "POST", TOKENS, body={"username": name, "password": PASSWORD})
    assert status == 429
    assert_rate_limited(envelope)
    assert headers["Retry-After"] == str(envelope["retryAfter"])


async def test_http_basic_failures_count_and_are_limited_too(user_limited: Served) -> None:
    """Failed HTTP Basic logins count towards the limit, and once limited HTTP Basic answers 429 too."""
    name, token = await add_user(user_limited, ["viewer"])
    for _ in range(PER_USER):
        status, _, _ = await http(user_limited, "GET", DEVICES, headers=basic(name, "wrong-password"))
        assert status == 401
    assert_rate_limited(await login(user_limited, name))
    status, headers, envelope = await http(user_limited, "GET", DEVICES, headers=basic(name, PASSWORD))
    assert status == 429 and "Retry-After" in headers
    assert_rate_limited(envelope)


async def test_tokens_keep_working_while_logins_are_limited(user_limited: Served) -> None:
    """Rate limiting stops logins only: a token the user already has keeps working."""
    name, token = await add_user(user_limited, ["viewer"])
    for _ in range(PER_USER):
        refused(await login(user_limited, name, "wrong-password"), "AUTH_FAILED")
    assert_rate_limited(await login(user_limited, name))
    status, _, envelope = await http(user_limited, "GET", DEVICES, headers={"Flow-Auth-Token": token})
    assert status == 200, envelope


async def test_unknown_usernames_are_limited_like_known_ones(user_limited: Served) -> None:
    """Failed logins of a name that does not exist are limited the same way (no hint that it does not)."""
    name = unique("nobody")
    for _ in range(PER_USER):
        refused(await login(user_limited, name, "wrong-password"), "AUTH_FAILED")
    assert_rate_limited(await login(user_limited, name, "wrong-password"))


async def test_too_many_failed_logins_from_an_address_are_rate_limited(address_limited: Served) -> None:
    """After N failed logins from one address, any login from it is RATE_LIMITED (429 and Retry-After over HTTP)."""
    name, _ = await add_user(address_limited, ["viewer"])
    for _ in range(PER_ADDRESS):
        refused(await login(address_limited, unique("guess"), "wrong-password"), "AUTH_FAILED")
    assert_rate_limited(await login(address_limited, name))
    status, headers, envelope = await http(
        address_limited, "POST", TOKENS, body={"username": name, "password": PASSWORD}
    )
    assert status == 429 and headers["Retry-After"] == str(envelope["retryAfter"])
    assert_rate_limited(envelope)
