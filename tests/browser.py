"""Support of the tests that run pages in a real browser: Debian's ``chromium``, driven by
Playwright. A module that needs them calls :func:`playwright_or_skip` at import: it is skipped,
with one line, where either cannot be found."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def playwright_or_skip() -> Any:
    """Playwright's async API; skips the calling module where Playwright or Chromium is missing."""
    api = pytest.importorskip("playwright.async_api", reason="Playwright for Python is not installed")
    if CHROMIUM is None:
        pytest.skip("no Chromium to run pages in (apt-get install chromium)", allow_module_level=True)
    return api


@contextlib.asynccontextmanager
async def chromium(api: Any) -> AsyncIterator[Any]:
    """A headless Chromium, closed after the block."""
    async with api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@contextlib.asynccontextmanager
async def static_site(directory: Path) -> AsyncIterator[str]:
    """Serve the files of ``directory`` over HTTP on a free port (another origin than a bus's);
    yields its origin, ``http://127.0.0.1:<port>``."""
    app = web.Application()
    app.router.add_static("/", directory)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
