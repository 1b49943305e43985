"""gateway.credentials: the caller's token, HTTP Basic or API key from a request."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict

from flowbus.errors import (
    AuthFailed,
)
from gateway.credentials import read_credentials

APPS = {"inventory/device": "inventory", "system/endpoint": "system", "a/b/c": "a"}


def basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


CREDENTIALS = [
    pytest.param({"Authorization": "Bearer abc"}, {}, {"token": "abc"}, id="bearer"),
    pytest.param({"authorization": "bearer  abc "}, {}, {"token": "abc"}, id="bearer-any-case"),
    pytest.param({"Flow-Auth-Token": "f", "Authorization": "Bearer b"}, {}, {"token": "f"}, id="header-over-bearer"),
    pytest.param({"Authorization": "Bearer b"}, {"token": "q"}, {"token": "q"}, id="query-over-bearer"),
    pytest.param(basic(b"alice:s:e:cret"), {}, {"username": "alice", "password": "s:e:cret"}, id="basic"),
    pytest.param(basic(b"bob:"), {}, {"username": "bob", "password": ""}, id="basic-empty-password"),
    pytest.param({"X-API-Key": "k1"}, {}, {"apikey": "k1"}, id="apikey"),
    pytest.param({"Authorization": "Digest x"}, {}, {}, id="other-scheme-ignored"),
    pytest.param({}, {}, {}, id="none"),
]


@pytest.mark.parametrize(("headers", "query", "expected"), CREDENTIALS)
def test_read_credentials(headers: dict[str, str], query: dict[str, str], expected: dict[str, str]) -> None:
    """Tokens, HTTP Basic and API keys become credentials, with the peer address."""
    credentials = read_credentials(CIMultiDict(headers), query, "peer")
    fields = {"token": None, "username": None, "password": None, "apikey": None, **expected}
    assert {name: getattr(credentials, name) for name in fields} == fields
    assert credentials.peer == "peer"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Basic !!"}, id="not-base64"),
        pytest.param(basic(b"nocolon"), id="no-colon"),
        pytest.param(basic(b":pw"), id="no-username"),
        pytest.param(basic(b"\xff\xfe:x"), id="not-utf8"),
    ],
)
def test_malformed_basic(headers: dict[str, str]) -> None:
    """Malformed HTTP Basic credentials are AUTH_FAILED."""
    with pytest.raises(AuthFailed):
        read_credentials(CIMultiDict(headers), {})
