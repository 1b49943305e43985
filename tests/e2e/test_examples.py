"""Every example runs as written against a served bus."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowbus.client import Client
from flowbus.errors import InvalidData
from tests.support import ADMIN_PASSWORD, ROOT, Served, serving


@pytest.fixture(scope="module")
def lab_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A bus serving the built-ins and the example application."""
    with serving(tmp_path_factory.mktemp("examples"), "--app", "examples.custom_app:create_app") as served:
        yield served


def run_example(args: list[str], served: Served) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLOWBUS_URL": served.ws_url,
        "FLOWBUS_HTTP": served.http_url,
        "FLOWBUS_PASSWORD": ADMIN_PASSWORD,
        "FLOWBUS_TOKEN": served.token or "",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_client_session(lab_bus: Served) -> None:
    """examples/client_session.py creates, updates, searches and deletes devices."""
    result = run_example([sys.executable, "examples/client_session.py"], lab_bus)
    assert result.returncode == 0, result.stderr
    assert "created ['core-sw-1', 'edge-rtr-7']" in result.stdout
    assert "updated core-sw-1 -> Uppsala" in result.stdout
    assert "search 'edge' found ['edge-rtr-7']" in result.stdout
    assert "after delete: DO_NOT_EXIST" in result.stdout


def test_readme_tour(lab_bus: Served) -> None:
    """examples/tour.sh (the README's tour) runs through with flowbus call and curl."""
    result = run_example(["bash", "examples/tour.sh"], lab_bus)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"location":"rack 4"' in result.stdout
    assert "gone, as expected" in result.stdout
    assert '"currentState": "approval"' in result.stdout and '"state": "done"' in result.stdout


async def test_custom_app(lab_bus: Served) -> None:
    """The example application's collection and RUN endpoint are served beside the built-ins."""
    async with Client(lab_bus.ws_url, token=lab_bus.token) as client:
        assert await client.run("lab/convert", "fahrenheit", {"celsius": 100}) == {"fahrenheit": 212.0}
        with pytest.raises(InvalidData):
            await client.run("lab/convert", "kelvin", {"celsius": "hot"})
        sensor = await client.create("lab/sensor", {"name": "t1", "celsius": 21.5})
        assert (await client.open("lab/sensor", sensor["id"]))["celsius"] == 21.5
        names = [e["name"] for e in await client.list("system/endpoint")]
        assert {"lab/sensor", "lab/convert", "inventory/device"} <= set(names)


def test_device_approval(lab_bus: Served) -> None:
    """examples/device_approval.py defines the flow, starts it, approves it, and sees it end."""
    for _ in range(2):  # a second run finds the flow defined already
        result = run_example([sys.executable, "examples/device_approval.py"], lab_bus)
        assert result.returncode == 0, result.stderr
        assert "execution WAITING in approval" in result.stdout
        assert "moved ['done']" in result.stdout
        assert "ended SUCCESS made device True" in result.stdout
