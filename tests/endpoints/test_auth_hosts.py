"""Without authentication the bus refuses what another site's page could make a browser send it:
a page that rebinds its own name to this machine (DNS rebinding) by its Host header, on both
ports, and cross-site requests (another site's image, link, form or fetch) by Origin and
Sec-Fetch-Site."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from flowbus.hosts import HostCheck
from tests.endpoints.helpers import DEVICE, DEVICES, http, ok, unique, ws_call
from tests.support import Served, serving


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8080",
        "127.0.0.1",
        "[::1]:8765",
        "10.1.2.3:80",
        "localhost:8080",
        "LocalHost",
        "app.localhost:8080",
        "bus.example:8080",
        "BUS.example.",
        "corp.example",
        "a.b.corp.example:443",
        None,
    ],
)
def test_addresses_localhost_and_listed_names_are_allowed(host: str | None) -> None:
    assert HostCheck(["bus.example", ".corp.example"])(host) is True


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "bus.example.evil.example",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "notcorp.example",
        "[::1",
        "",
        ":8080",
    ],
)
def test_other_names_are_refused(host: str) -> None:
    assert HostCheck(["bus.example", ".corp.example"])(host) is False


def test_a_star_allows_any_name_and_the_own_host_is_allowed() -> None:
    assert HostCheck(["*"])("evil.example") is True
    assert HostCheck([], own="bus.internal")("bus.internal:8765") is True
    assert HostCheck([], own="0.0.0.0")("evil.example") is False


@pytest.fixture(scope="module")
def open_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus without authentication that also answers to bus.example."""
    env = {"FLOWBUS_NO_AUTH": "1", "FLOWBUS_ALLOWED_HOSTS": "bus.example"}
    with serving(tmp_path_factory.mktemp("open-hosts"), env=env) as served:
        yield served


def ws_urls(bus: Served) -> list[str]:
    return [bus.port_url, "ws" + bus.http_url.removeprefix("http") + "/ws"]


async def handshake_status(url: str, host: str) -> int:
    """The status of a websocket handshake sent with ``host`` as its Host header (101: opened)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers={"Host": host}) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status


async def test_a_rebound_name_is_refused_over_http(open_bus: Served) -> None:
    status, _, envelope = await http(open_bus, "GET", DEVICES, headers={"Host": "evil.example:8080"})
    assert (status, envelope["errorcode"]) == (403, "PERMISSION_DENIED")
    assert "FLOWBUS_ALLOWED_HOSTS" in envelope["message"]


@pytest.mark.parametrize("host", ["bus.example:8080", "127.0.0.1", "localhost"])
async def test_own_names_are_answered_over_http(open_bus: Served, host: str) -> None:
    status, _, envelope = await http(open_bus, "GET", DEVICES, headers={"Host": host})
    assert status == 200 and envelope["success"] is True


async def test_a_rebound_name_cannot_open_a_websocket_on_either_port(open_bus: Served) -> None:
    for url in ws_urls(open_bus):
        assert await handshake_status(url, "evil.example") == 403, url
        assert await handshake_status(url, "bus.example") == 101, url


CROSS_SITE = [
    pytest.param("GET", {"Sec-Fetch-Site": "cross-site"}, id="image-or-link"),
    pytest.param("GET", {"Sec-Fetch-Site": "same-site"}, id="sibling-site"),
    pytest.param("POST", {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, id="form-or-fetch"),
    pytest.param("POST", {"Origin": "null"}, id="sandboxed"),
]


@pytest.mark.parametrize(("verb", "headers"), CROSS_SITE)
async def test_another_sites_request_is_refused(open_bus: Served, verb: str, headers: dict[str, str]) -> None:
    """A GET that carries DELETE, or a form's POST (CREATE), from any web page would otherwise
    reach an open bus on the visitor's machine: 403, and nothing is written."""
    objectid = unique("device")
    ok(await ws_call(open_bus, None, "CREATE", DEVICE, data={"id": objectid, "name": "kept"}))
    path, body = (f"{DEVICES}{objectid}?method=DELETE", None) if verb == "GET" else (DEVICES, {"name": "planted"})
    status, _, envelope = await http(open_bus, verb, path, body=body, headers=headers)
    assert (status, envelope["errorcode"]) == (403, "PERMISSION_DENIED")
    assert envelope["message"].startswith("Cross-site request refused")
    names = {row["id"]: row["name"] for row in ok(await ws_call(open_bus, None, "LIST", DEVICE))}
    assert names[objectid] == "kept" and "planted" not in names.values()


SAME_SITE = [
    pytest.param({"Sec-Fetch-Site": "same-origin"}, id="own-page"),
    pytest.param({"Sec-Fetch-Site": "none"}, id="typed-url"),
    pytest.param({}, id="not-a-browser"),
]


@pytest.mark.parametrize("headers", SAME_SITE)
async def test_own_pages_typed_urls_and_scripts_are_answered(open_bus: Served, headers: dict[str, str]) -> None:
    status, _, envelope = await http(open_bus, "GET", DEVICES, headers=headers)
    assert status == 200 and envelope["success"] is True


async def test_the_bus_own_origin_is_answered(open_bus: Served) -> None:
    own = "http://" + open_bus.http_url.removeprefix("http://")
    headers = {"Origin": own, "Sec-Fetch-Site": "same-origin"}
    status, _, envelope = await http(open_bus, "GET", DEVICES, headers=headers)
    assert status == 200 and envelope["success"] is True


async def test_with_authentication_the_host_is_not_checked(bus: Served) -> None:
    """With authentication on (the default) a rebound page has no credentials: names are not checked."""
    rebound = {"Host": "evil.example", "Flow-Auth-Token": bus.token or ""}
    status, _, envelope = await http(bus, "GET", DEVICES, headers=rebound)
    assert status == 200 and envelope["success"] is True
    status, _, envelope = await http(bus, "GET", DEVICES, headers={"Host": "evil.example"})
    assert (status, envelope["errorcode"]) == (401, "AUTH_REQUIRED")
