"""examples/browser.html in a real browser (Debian's ``chromium`` through Playwright), opened
from another origin than the bus's, as its readers will: served from another port, and as a
file. Skipped, with one line, where the browser cannot be found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium, playwright_or_skip, static_site
from tests.flowbus.helpers import ok
from tests.support import ROOT, Served, serving

playwright_api = playwright_or_skip()
EXAMPLE = ROOT / "examples" / "browser.html"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium(playwright_api) as launched:
        yield launched


async def watch_devices(browser: Any, url: str, bus: Served) -> Any:
    """Open the example at ``url`` and ask it to watch the devices of ``bus``."""
    page = await browser.new_page()
    page.set_default_timeout(15_000)
    await page.goto(url)
    await page.get_by_label("Bus").fill(bus.http_url)
    await page.get_by_label("Token").fill(bus.token or "")
    await page.get_by_role("button", name="Watch devices").click()
    return page


async def lists_and_watches(page: Any, bus: Served) -> None:
    await page.locator("li", has_text="core-sw-1").wait_for()
    async with bus.connect() as ws:
        await ok(ws, "CREATE", "inventory/device", data={"name": "edge-rtr-7"})
    await page.locator("li", has_text="CREATED edge-rtr-7").wait_for()


async def test_served_from_another_port_it_names_the_settings_it_needs_and_works_with_them(
    browser: Any, tmp_path: Path
) -> None:
    async with static_site(EXAMPLE.parent) as origin:
        url = f"{origin}/{EXAMPLE.name}"
        with serving(tmp_path / "default") as bus:  # the defaults: neither CORS nor this origin
            page = await watch_devices(browser, url, bus)
            problem = page.get_by_role("alert")
            await problem.filter(has_text=f"FLOWBUS_CORS_ORIGINS={origin}").wait_for()
            assert f"FLOWBUS_ALLOWED_ORIGINS={origin}" in await problem.inner_text()

        env = {"FLOWBUS_CORS_ORIGINS": origin, "FLOWBUS_ALLOWED_ORIGINS": origin}
        with serving(tmp_path / "allowed", env=env) as bus:
            async with bus.connect() as ws:
                await ok(ws, "CREATE", "inventory/device", data={"name": "core-sw-1"})
            await lists_and_watches(await watch_devices(browser, url, bus), bus)


async def test_opened_as_a_file_it_works_with_the_origin_null_allowed(browser: Any, tmp_path: Path) -> None:
    with serving(tmp_path / "cors-only", env={"FLOWBUS_CORS_ORIGINS": "null"}) as bus:
        page = await watch_devices(browser, EXAMPLE.as_uri(), bus)  # the module loads, the websocket is refused
        await page.get_by_role("alert").filter(has_text="FLOWBUS_ALLOWED_ORIGINS=null").wait_for()

    env = {"FLOWBUS_CORS_ORIGINS": "null", "FLOWBUS_ALLOWED_ORIGINS": "null"}
    with serving(tmp_path / "allowed", env=env) as bus:
        async with bus.connect() as ws:
            await ok(ws, "CREATE", "inventory/device", data={"name": "core-sw-1"})
        await lists_and_watches(await watch_devices(browser, EXAMPLE.as_uri(), bus), bus)
