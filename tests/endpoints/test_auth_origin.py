"""The websocket Origin check: browsers may open websockets only from the bus's own host or a listed origin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import InvalidStatus

from tests.endpoints.helpers import call, ok
from tests.support import ENTRIES, Served, serve, serving, ws_connect


@pytest.fixture(scope="module", params=ENTRIES)
def entry(request: pytest.FixtureRequest) -> str:
    """Every test here runs against both websocket entries: the websocket port and the gateway's /ws."""
    return str(request.param)


LISTED = "https://console.example.com"


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory, entry: str) -> Iterator[Served]:
    """The module's bus lists https://console.example.com in FLOWBUS_ALLOWED_ORIGINS."""
    env = {"FLOWBUS_ALLOWED_ORIGINS": f"{LISTED},https://b.example"}
    with serving(tmp_path_factory.mktemp("origin"), env=env, entry=entry) as served:
        yield served


def own(bus: Served) -> str:
    """The bus's own host and port, as the client sends it in Host."""
    return urlsplit(bus.ws_url).netloc


Origin = Callable[[Served], str | None]

REFUSED: dict[str, Origin] = {
    "other-site": lambda bus: "http://evil.example",
    "own-host-as-subdomain": lambda bus: f"http://{own(bus)}.evil.example",
    "own-address-other-port": lambda bus: f"http://{urlsplit(bus.ws_url).hostname}:1",
    "null": lambda bus: "null",
    "listed-but-other-scheme": lambda bus: LISTED.replace("https", "http"),
}


@pytest.mark.parametrize("origin", REFUSED.values(), ids=REFUSED.keys())
async def test_foreign_origin_is_refused_403(bus: Served, origin: Origin) -> None:
    """A handshake with an Origin that is neither the bus's host nor listed is refused with HTTP 403."""
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(bus.ws_url, token=bus.token, origin=origin(bus)):
            pass
    assert refused.value.response.status_code == 403


ACCEPTED: dict[str, Origin] = {
    "same-host": lambda bus: f"http://{own(bus)}",
    "same-host-https": lambda bus: f"https://{own(bus)}",
    "listed": lambda bus: LISTED,
    "listed-second": lambda bus: "https://b.example",
    "none": lambda bus: None,
}


@pytest.mark.parametrize("origin", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_own_listed_or_no_origin_is_accepted(bus: Served, origin: Origin) -> None:
    """A handshake from the bus's own host, from a listed origin, or without Origin (not a browser) opens."""
    async with ws_connect(bus.ws_url, token=bus.token, origin=origin(bus)) as ws:
        ok(await call(ws, "LIST"))


async def test_origin_check_is_on_by_default(tmp_path_factory: pytest.TempPathFactory, entry: str) -> None:
    """Without FLOWBUS_ALLOWED_ORIGINS, another site's Origin is refused and the bus's own accepted."""
    served = serve(tmp_path_factory.mktemp("default-origin"), entry=entry)
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(served.ws_url, origin=LISTED):
                pass
        assert refused.value.response.status_code == 403
        async with ws_connect(served.ws_url, token=served.token, origin=f"http://{own(served)}") as ws:
            ok(await call(ws, "LIST"))
    finally:
        served.stop()
