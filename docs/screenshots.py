"""Remake the console's screenshots in docs/ (the README shows them), from a bus of its own.

    .venv/bin/python docs/screenshots.py

Needs what the console's tests need: Playwright and Debian's ``chromium``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from playwright.async_api import ViewportSize, async_playwright  # noqa: E402

from tests.browser import CHROMIUM  # noqa: E402
from tests.support import ADMIN_PASSWORD, ROOT, Served, rpc, serving  # noqa: E402

WINDOW: ViewportSize = {"width": 1100, "height": 640}


async def call(bus: Served, method: str, endpoint: str, **fields: Any) -> Any:
    async with bus.connect() as ws:
        answer = await rpc(ws, {"method": method, "endpoint": endpoint, **fields})
    assert answer["success"], answer
    return answer["data"]


async def log_in(page: Any, bus: Served) -> None:
    await page.goto(bus.http_url + "/")
    form = page.locator("#login")
    await form.get_by_label("User").fill("admin")
    await form.get_by_label("Password").fill(ADMIN_PASSWORD)
    await form.get_by_role("button", name="Log in").click()
    await page.locator("#connection", has_text="connected").wait_for()


async def shoot(bus: Served) -> None:
    devices = [
        {"name": "core-sw-1", "location": "rack 4", "tags": ["core", "lab"]},
        {"name": "edge-rtr-7", "location": "rack 2", "address": "10.0.0.7"},
        {"name": "lab-ap-3", "location": "lab"},
    ]
    await call(bus, "CREATE", "inventory/device", data=devices)
    flow = json.loads((ROOT / "examples" / "device_approval.json").read_text())
    await call(bus, "CREATE", "flows/flow", data=flow)
    await call(bus, "RUN", "flows/flow", objectid=flow["name"], data={"name": "new-switch"})
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport=WINDOW)
        await page.goto(bus.http_url + "/")
        await page.screenshot(path=DOCS / "console-login.png")

        await log_in(page, bus)
        await page.locator("#endpoints").get_by_role("button", name="inventory/device").click()
        await page.locator("tr", has_text="core-sw-1").get_by_role("button", name="Edit").click()
        await page.locator("#object-form").wait_for()
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=DOCS / "console-devices.png")

        await page.locator("#endpoints").get_by_role("button", name="Flows and executions").click()
        await page.locator("#executions tr[data-status=WAITING]").wait_for()
        await page.mouse.move(0, 0)
        await page.screenshot(path=DOCS / "console-flows.png", full_page=True)
        await browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir, serving(Path(workdir)) as bus:
        asyncio.run(shoot(bus))


if __name__ == "__main__":
    main()
