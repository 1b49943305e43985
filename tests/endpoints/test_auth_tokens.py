"""The ways in (tokens, API keys, HTTP Basic) and the ways of being refused, against a served bus."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import jwt
import pytest

from tests.endpoints.helpers import (
    DEVICES,
    PASSWORD,
    TOKENS,
    add_user,
    admin,
    b64url,
    basic,
    bearer,
    call,
    http,
    jwt_join,
    jwt_parts,
    ok,
    refused,
    unique,
    ws_call,
)
from tests.support import ADMIN_PASSWORD, Served, serving, ws_connect

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class Caller:
    """A viewer of its own, with a token and an API key."""

    def __init__(self, name: str, token: str, apikey: str) -> None:
        self.name, self.token, self.apikey = name, token, apikey


@pytest.fixture
async def viewer(bus: Served) -> Caller:
    name, token = await add_user(bus, ["viewer"])
    key = ok(await ws_call(bus, bus.token, "CREATE", "auth/apikey", data={"owner": name}))["key"]
    return Caller(name, token, key)


def mine(answer: dict[str, Any], name: str) -> None:
    """Assert the answer is LIST auth/token made as ``name``: its own tokens, and only those."""
    rows = ok(answer)
    assert rows and {row["username"] for row in rows} == {name}, rows


# -- ways in ----------------------------------------------------------------------------------

Way = Callable[[Served, Caller], Awaitable[dict[str, Any]]]


async def envelope_token(bus: Served, who: Caller) -> dict[str, Any]:
    return await ws_call(bus, who.token, "LIST", "auth/token")


async def envelope_apikey(bus: Served, who: Caller) -> dict[str, Any]:
    return await ws_call(bus, who.apikey, "LIST", "auth/token")


async def connection_query(bus: Served, who: Caller) -> dict[str, Any]:
    async with ws_connect(f"{bus.ws_url}/auth/token?token={who.token}") as ws:
        return await call(ws, "LIST", None)


async def connection_bearer(bus: Served, who: Caller) -> dict[str, Any]:
    async with bus.connect("/auth/token", token=who.token) as ws:
        return await call(ws, "LIST", None)


async def connection_apikey(bus: Served, who: Caller) -> dict[str, Any]:
    async with bus.connect("/auth/token", token=who.apikey) as ws:
        return await call(ws, "LIST", None)


def over_http(headers: Callable[[Caller], dict[str, str]], query: Callable[[Caller], str] = lambda who: "") -> Way:
    async def way(bus: Served, who: Caller) -> dict[str, Any]:
        status, _, envelope = await http(bus, "GET", TOKENS + query(who), headers=headers(who))
        assert status == (200 if envelope["success"] else 401)
        return envelope

    return way


WAYS: dict[str, Way] = {
    "ws-envelope-token": envelope_token,
    "ws-envelope-apikey": envelope_apikey,
    "ws-connection-query-token": connection_query,
    "ws-connection-bearer": connection_bearer,
    "ws-connection-apikey": connection_apikey,
    "http-flow-auth-token": over_http(lambda who: {"Flow-Auth-Token": who.token}),
    "http-query-token": over_http(lambda who: {}, lambda who: f"?token={who.token}"),
    "http-bearer": over_http(lambda who: bearer(who.token)),
    "http-basic": over_http(lambda who: basic(who.name, PASSWORD)),
    "http-x-api-key": over_http(lambda who: {"X-API-Key": who.apikey}),
    "http-apikey-as-bearer": over_http(lambda who: bearer(who.apikey)),
}


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
async def test_way_in_authenticates_the_caller(bus: Served, viewer: Caller, way: Way) -> None:
    """Each documented way of presenting credentials lets the caller in as itself."""
    mine(await way(bus, viewer), viewer.name)


async def test_envelope_token_wins_over_the_connection_token(bus: Served, viewer: Caller) -> None:
    """A token in the envelope is used for that message instead of the connection's default."""
    async with bus.connect("/auth/token") as ws:  # the admin's token as the connection default
        mine(await call(ws, "LIST", None, token=viewer.token), viewer.name)
        assert {row["username"] for row in ok(await call(ws, "LIST", None))} > {viewer.name}


# -- missing credentials ------------------------------------------------------------------------


async def test_no_token_over_websockets_is_auth_required(bus: Served) -> None:
    """A call without any token over websockets answers AUTH_REQUIRED."""
    refused(await ws_call(bus, None, "LIST"), "AUTH_REQUIRED")


async def test_no_credentials_over_http_is_auth_required_401(bus: Served) -> None:
    """An HTTP call without credentials answers AUTH_REQUIRED with status 401."""
    status, _, envelope = await http(bus, "GET", DEVICES)
    assert status == 401
    refused(envelope, "AUTH_REQUIRED")


async def test_login_needs_no_token(bus: Served) -> None:
    """CREATE on auth/token needs no credentials; it answers the token, its expiry (RFC 3339) and its id."""
    data = {"username": "admin", "password": ADMIN_PASSWORD}
    answer = ok(await ws_call(bus, None, "CREATE", "auth/token", data=data))
    assert set(answer) == {"token", "expires", "id"}
    assert TIMESTAMP.fullmatch(answer["expires"])
    header, claims, _ = jwt_parts(answer["token"])
    assert header["alg"] == "HS256"
    assert claims["jti"] == answer["id"] and claims["sub"] == "admin"
    assert {"exp", "iat", "jti", "sub"} <= set(claims)


# -- refused tokens ---------------------------------------------------------------------------


def secret_of(bus: Served) -> bytes:
    return (bus.data / "jwt.secret").read_bytes().strip()


def claims_of(bus: Served, subject: str = "admin", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": subject, "jti": unique("jti"), "iat": now, "exp": now + 600, "roles": ["admin"], "ns": None}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def flip_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2  # not the last character: some of its bits are padding
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    return f"{head}.{flipped}"


def raise_roles(token: str) -> str:
    header, payload, signature = jwt_parts(token)
    return jwt_join(header, {**payload, "roles": ["admin"]}, signature)


def hs256_by_hand(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    unsigned = jwt_join(header, payload, "").rstrip(".")
    signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64url(signature)}"


OTHER_SECRET = "another-secret-long-enough-for-hs256-keys"
BAD_TOKENS: dict[str, Callable[[Served, str], str]] = {
    "garbage": lambda bus, token: "not-a-token",
    "three-dots": lambda bus, token: "a.b.c",
    "truncated": lambda bus, token: token[: len(token) // 2],
    "apikey-shaped-unknown": lambda bus, token: "fbk_0123abcd_" + "x" * 43,
    "tampered-signature": lambda bus, token: flip_signature(token),
    "tampered-payload": lambda bus, token: raise_roles(token),
    "other-secret": lambda bus, token: jwt.encode(claims_of(bus), OTHER_SECRET, algorithm="HS256"),
    "hs512-right-secret": lambda bus, token: jwt.encode(claims_of(bus), secret_of(bus), algorithm="HS512"),
    "rs256-header": lambda bus, token: hs256_by_hand({"alg": "RS256", "typ": "JWT"}, claims_of(bus), secret_of(bus)),
    "alg-none": lambda bus, token: jwt_join({"alg": "none", "typ": "JWT"}, claims_of(bus), ""),
    "alg-none-upper": lambda bus, token: jwt_join({"alg": "None", "typ": "JWT"}, claims_of(bus), ""),
    "no-exp": lambda bus, token: jwt.encode(claims_of(bus, exp=...), secret_of(bus), algorithm="HS256"),
    "no-jti": lambda bus, token: jwt.encode(claims_of(bus, jti=...), secret_of(bus), algorithm="HS256"),
    "unknown-user": lambda bus, token: jwt.encode(claims_of(bus, "nobody-here"), secret_of(bus), algorithm="HS256"),
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_token_over_websockets_is_auth_failed(bus: Served, viewer: Caller, make: Any) -> None:
    """A malformed, tampered, wrongly-signed or wrong-algorithm token in the envelope answers AUTH_FAILED."""
    refused(await ws_call(bus, make(bus, viewer.token), "LIST", "auth/token"), "AUTH_FAILED")


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_token_over_http_is_auth_failed_401(bus: Served, viewer: Caller, make: Any) -> None:
    """The same tokens as ``Authorization: Bearer`` over HTTP answer AUTH_FAILED with status 401."""
    status, _, envelope = await http(bus, "GET", DEVICES, headers=bearer(make(bus, viewer.token)))
    assert status == 401
    refused(envelope, "AUTH_FAILED")


async def test_bad_connection_token_refuses_each_call(bus: Served) -> None:
    """A bad token given at the handshake is refused on each call of the connection (the handshake succeeds)."""
    async with bus.connect(token="not-a-token") as ws:
        refused(await call(ws, "LIST"), "AUTH_FAILED")
        refused(await call(ws, "LIST"), "AUTH_FAILED")


async def test_right_secret_signs_a_token_the_bus_takes(bus: Served) -> None:
    """A control for the table above: an HS256 token signed with the bus's own secret is accepted."""
    token = jwt.encode(claims_of(bus), secret_of(bus), algorithm="HS256")
    ok(await ws_call(bus, token, "LIST"))


def test_jwt_secret_file_is_private(bus: Served) -> None:
    """The generated JWT secret is kept in <data>/jwt.secret with mode 0600."""
    assert (bus.data / "jwt.secret").stat().st_mode & 0o777 == 0o600


# -- passwords --------------------------------------------------------------------------------


async def test_wrong_password_is_auth_failed(bus: Served, viewer: Caller) -> None:
    """Logging in with a wrong password answers AUTH_FAILED (401 over HTTP)."""
    data = {"username": viewer.name, "password": "wrong-one"}
    refused(await ws_call(bus, None, "CREATE", "auth/token", data=data), "AUTH_FAILED")
    status, _, envelope = await http(bus, "POST", TOKENS, body=data)
    assert status == 401
    refused(envelope, "AUTH_FAILED")


async def test_unknown_user_answers_like_a_wrong_password(bus: Served, viewer: Caller) -> None:
    """A login for an unknown user answers exactly as one with a wrong password (code, message, status)."""
    wrong = await http(bus, "POST", TOKENS, body={"username": viewer.name, "password": "wrong-one"})
    unknown = await http(bus, "POST", TOKENS, body={"username": unique("nobody"), "password": "wrong-one"})
    assert wrong[0] == unknown[0] == 401
    for envelope in (wrong[2], unknown[2]):
        refused(envelope, "AUTH_FAILED")
    assert wrong[2]["message"] == unknown[2]["message"]


@pytest.mark.parametrize(
    "headers",
    [basic("admin", "wrong-password"), basic("nobody-at-all", "wrong-password")],
    ids=["wrong-password", "unknown-user"],
)
async def test_http_basic_with_wrong_credentials_is_auth_failed(bus: Served, headers: dict[str, str]) -> None:
    """HTTP Basic with a wrong password or an unknown user answers AUTH_FAILED 401."""
    status, _, envelope = await http(bus, "GET", DEVICES, headers=headers)
    assert status == 401
    refused(envelope, "AUTH_FAILED")


@pytest.mark.parametrize("value", ["Basic !!!", "Basic " + b64url(b"no-colon")], ids=["not-base64", "no-colon"])
async def test_malformed_http_basic_is_auth_failed(bus: Served, value: str) -> None:
    """Malformed HTTP Basic credentials answer AUTH_FAILED 401."""
    status, _, envelope = await http(bus, "GET", DEVICES, headers={"Authorization": value})
    assert status == 401
    refused(envelope, "AUTH_FAILED")


# -- revocation and refresh ---------------------------------------------------------------------


async def test_revoked_token_is_refused_at_once_also_on_an_open_connection(bus: Served, viewer: Caller) -> None:
    """DELETE auth/token by id revokes: the token is refused at once, also on a connection that used it."""
    token_id = jwt_parts(viewer.token)[1]["jti"]
    async with bus.connect(token=viewer.token) as ws:
        ok(await call(ws, "LIST"))  # the identity is now cached
        ok(await call(ws, "LIST", token=viewer.token))
        ok(await call(ws, "DELETE", "auth/token", objectid=token_id))
        refused(await call(ws, "LIST"), "AUTH_FAILED")
        refused(await call(ws, "LIST", token=viewer.token), "AUTH_FAILED")
    refused(await ws_call(bus, viewer.token, "LIST"), "AUTH_FAILED")
    status, _, envelope = await http(bus, "GET", DEVICES, headers=bearer(viewer.token))
    assert status == 401
    refused(envelope, "AUTH_FAILED")


async def test_admin_revokes_anyones_token(bus: Served, viewer: Caller) -> None:
    """An admin may revoke another user's token by id."""
    token_id = jwt_parts(viewer.token)[1]["jti"]
    revoked = await admin(bus, "DELETE", "auth/token", objectid=token_id)
    assert revoked["revoked"] is True
    refused(await ws_call(bus, viewer.token, "LIST"), "AUTH_FAILED")


async def test_users_cannot_revoke_others_tokens(bus: Served, viewer: Caller) -> None:
    """A user cannot revoke another user's token (as if it did not exist); that token keeps working."""
    _, other = await add_user(bus, ["viewer"])
    other_id = jwt_parts(other)[1]["jti"]
    refused(await ws_call(bus, viewer.token, "DELETE", "auth/token", objectid=other_id), "DO_NOT_EXIST")
    ok(await ws_call(bus, other, "LIST"))


async def test_refresh_answers_a_new_working_token(bus: Served, viewer: Caller) -> None:
    """RUN refresh on auth/token answers a new token (with expires and id) that works."""
    fresh = ok(await ws_call(bus, viewer.token, "RUN", "auth/token", objectid="refresh"))
    assert set(fresh) == {"token", "expires", "id"}
    assert fresh["token"] != viewer.token
    assert jwt_parts(fresh["token"])[1]["sub"] == viewer.name
    mine(await ws_call(bus, fresh["token"], "LIST", "auth/token"), viewer.name)


async def test_list_shows_own_tokens_never_the_tokens_themselves(bus: Served, viewer: Caller) -> None:
    """LIST auth/token shows the caller's token ids, expiry and revoked flag, never a token."""
    rows = ok(await ws_call(bus, viewer.token, "LIST", "auth/token"))
    assert [row["id"] for row in rows] == [jwt_parts(viewer.token)[1]["jti"]]
    assert set(rows[0]) >= {"id", "username", "expires_at", "revoked"}
    assert viewer.token not in str(rows) and "token" not in rows[0]


# -- a token's lifetime -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus whose tokens live one second."""
    with serving(tmp_path_factory.mktemp("short"), env={"FLOWBUS_TOKEN_LIFETIME": "1"}) as served:
        yield served


async def test_expired_token_is_refused(short_bus: Served) -> None:
    """A token past its lifetime is refused with AUTH_FAILED (polled in a bounded loop, not timed)."""
    token = short_bus.token
    assert token is not None
    async with short_bus.connect(token=token) as ws:
        answer = await call(ws, "LIST")
        for _ in range(300):
            if not answer["success"]:
                break
            await asyncio.sleep(0.1)
            answer = await call(ws, "LIST")
    refused(answer, "AUTH_FAILED")
    assert "expired" in answer["message"]
