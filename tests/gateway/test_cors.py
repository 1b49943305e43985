"""CORS on the gateway: off by default; FLOWBUS_CORS_ORIGINS lists the origins allowed (``*``: any)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.gateway.helpers import DEVICES
from tests.support import Served, serving

LISTED = "https://console.example.com"
UNLISTED = "https://evil.example"
METHODS = "GET, POST, PUT, PATCH, DELETE"
HEADERS = (
    "Authorization, Content-Type, Flow-Auth-Token, Flow-Request-ObjectId, Flow-Request-Namespace, "
    "Flow-Request-Method, X-API-Key"
)
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


def start(tmp_path_factory: pytest.TempPathFactory, origins: str) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("cors"), env={"FLOWBUS_CORS_ORIGINS": origins}) as served:
        yield served


@pytest.fixture(scope="module")
def cors_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus allowing two origins by CORS."""
    yield from start(tmp_path_factory, f"{LISTED}, https://b.example")


@pytest.fixture(scope="module")
def star_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus allowing any origin by CORS."""
    yield from start(tmp_path_factory, "*")


async def request(
    bus: Served, verb: str, path: str, origin: str | None, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP call with ``Origin`` (if given); its status, headers and body."""
    sent = {**({"Origin": origin} if origin else {}), **(headers or {})}
    async with (
        aiohttp.ClientSession(base_url=bus.http_url) as session,
        session.request(verb, path, headers=sent, **kwargs) as response,
    ):
        return response.status, dict(response.headers), await response.read()


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower().startswith("access-control-")}


def auth(bus: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {bus.token}"}


# -- simple requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [LISTED, "https://b.example"], ids=["first", "second"])
async def test_listed_origin_is_allowed(cors_bus: Served, origin: str) -> None:
    """A listed origin gets Access-Control-Allow-Origin: <origin> and Vary: Origin, never credentials."""
    status, headers, _ = await request(cors_bus, "GET", DEVICES, origin, auth(cors_bus))
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers
    assert headers["Access-Control-Expose-Headers"] == "Retry-After"


async def test_error_envelopes_carry_cors_headers(cors_bus: Served) -> None:
    """An error answer (401 AUTH_REQUIRED) to a listed origin carries the CORS headers too."""
    status, headers, body = await request(cors_bus, "GET", DEVICES, LISTED)
    assert status == 401 and b"AUTH_REQUIRED" in body
    assert headers["Access-Control-Allow-Origin"] == LISTED


@pytest.mark.parametrize(
    "origin",
    [UNLISTED, "http://console.example.com", "https://console.example.com.evil.example", "null", None],
    ids=["other-site", "other-scheme", "suffixed", "null", "no-origin"],
)
async def test_unlisted_origin_gets_no_cors_headers(cors_bus: Served, origin: str | None) -> None:
    """A request from an origin not listed (or without Origin) is answered as usual, without CORS headers."""
    status, headers, _ = await request(cors_bus, "GET", DEVICES, origin, auth(cors_bus))
    assert status == 200
    assert cors_headers(headers) == {}


async def test_star_allows_any_origin_by_name(star_bus: Served) -> None:
    """With ``*`` listed, any origin is allowed and echoed by name (never a literal ``*``), with Vary: Origin."""
    status, headers, _ = await request(star_bus, "GET", DEVICES, UNLISTED, auth(star_bus))
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == UNLISTED
    assert "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers


# -- preflight ------------------------------------------------------------------------------------


async def test_preflight_from_a_listed_origin_is_204(cors_bus: Served) -> None:
    """A preflight of an /api path from a listed origin answers 204 with methods, headers, max age 600."""
    status, headers, body = await request(cors_bus, "OPTIONS", DEVICES + "some-id", LISTED, PREFLIGHT)
    assert (status, body) == (204, b"")
    assert cors_headers(headers) == {
        "Access-Control-Allow-Origin": LISTED,
        "Access-Control-Allow-Methods": METHODS,
        "Access-Control-Allow-Headers": HEADERS,
        "Access-Control-Max-Age": "600",
        "Access-Control-Expose-Headers": "Retry-After",
    }
    assert "Origin" in headers["Vary"]


async def test_preflight_with_star_is_204(star_bus: Served) -> None:
    """With ``*`` listed, a preflight from any origin answers 204."""
    status, headers, _ = await request(star_bus, "OPTIONS", DEVICES, UNLISTED, PREFLIGHT)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == UNLISTED


@pytest.mark.parametrize(
    ("origin", "headers"),
    [(UNLISTED, PREFLIGHT), (None, PREFLIGHT), (LISTED, {})],
    ids=["unlisted-origin", "no-origin", "not-a-preflight"],
)
async def test_other_options_requests_are_405_as_before(
    cors_bus: Served, origin: str | None, headers: dict[str, str]
) -> None:
    """OPTIONS from an unlisted origin, without Origin or not a preflight answers 405 as before."""
    status, answered, body = await request(cors_bus, "OPTIONS", DEVICES, origin, headers)
    assert status == 405 and b"METHOD_NOT_SUPPORTED" in body
    if origin != LISTED:
        assert cors_headers(answered) == {}


async def test_preflight_only_for_api_paths(cors_bus: Served) -> None:
    """A preflight of a path outside /api/ is not answered 204."""
    status, _, _ = await request(cors_bus, "OPTIONS", "/healthz", LISTED, PREFLIGHT)
    assert status == 405


# -- off by default -------------------------------------------------------------------------------


async def test_cors_is_off_by_default(bus: Served) -> None:
    """Without FLOWBUS_CORS_ORIGINS no answer carries CORS headers or Vary: Origin, and a preflight is 405."""
    status, headers, _ = await request(bus, "GET", DEVICES, LISTED, auth(bus))
    assert status == 200 and cors_headers(headers) == {} and "Vary" not in headers
    status, headers, _ = await request(bus, "OPTIONS", DEVICES, LISTED, PREFLIGHT)
    assert status == 405 and cors_headers(headers) == {}
