"""The ``flowbus`` command line: call, serve's configuration, errors."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowbus import node
from tests.support import ROOT, Served, rpc, serve


def flowbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flowbus`` with ``args``."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flowbus", *args], capture_output=True, text=True, env=full_env, timeout=60
    )


def test_call_prints_the_answer(bus: Served) -> None:
    """``flowbus call`` prints the answer envelope and exits 0 on success."""
    result = flowbus(
        "call",
        "inventory/device",
        "CREATE",
        "--url",
        bus.ws_url,
        "--token",
        bus.token or "",
        "--data",
        '{"name": "cli-1"}',
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["success"] is True and answer["data"]["name"] == "cli-1"


def test_call_exits_1_on_failure(bus: Served) -> None:
    """A call answered success:false exits 1 and still prints the envelope."""
    result = flowbus(
        "call", "inventory/device", "OPEN", "--objectid", "nope", "--url", bus.ws_url, "--token", bus.token or ""
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorcode"] == "DO_NOT_EXIST"


def test_call_reads_data_file_params_and_namespace(bus: Served, tmp_path: Path) -> None:
    """--data @file, --param and --namespace reach the bus."""
    payload = tmp_path / "device.json"
    payload.write_text('{"name": "from-file", "location": "attic"}')
    made = flowbus(
        "call",
        "inventory/device",
        "CREATE",
        "--url",
        bus.ws_url,
        "--token",
        bus.token or "",
        "--data",
        f"@{payload}",
        "--namespace",
        "cli-ns",
    )
    assert made.returncode == 0, made.stdout
    listed = flowbus(
        "call",
        "inventory/device",
        "list",
        "--url",
        bus.ws_url,
        "--token",
        bus.token or "",
        "--namespace",
        "cli-ns",
        "--param",
        "location=attic",
    )
    assert [d["name"] for d in json.loads(listed.stdout)["data"]] == ["from-file"]


def test_call_uses_flowbus_url_from_the_environment(bus: Served) -> None:
    """FLOWBUS_URL names the bus when --url is not given."""
    result = flowbus(
        "call", "system/endpoint", "LIST", env={"FLOWBUS_URL": bus.ws_url, "FLOWBUS_TOKEN": bus.token or ""}
    )
    assert result.returncode == 0
    assert "inventory/device" in [e["name"] for e in json.loads(result.stdout)["data"]]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--data", "{not json"], id="bad-json"),
        pytest.param(["--data", "@/nonexistent/file.json"], id="missing-file"),
        pytest.param(["--param", "novalue"], id="bad-param"),
    ],
)
def test_call_refuses_bad_arguments(args: list[str]) -> None:
    """Malformed arguments exit 2 with a message, before any call is made."""
    result = flowbus("call", "inventory/device", "CREATE", "--url", "ws://127.0.0.1:9", *args)
    assert result.returncode == 2
    assert "flowbus call:" in result.stderr


def test_call_to_unreachable_bus_fails_cleanly() -> None:
    """An unreachable bus is answered UNAVAILABLE, exit 1, no traceback."""
    result = flowbus("call", "inventory/device", "LIST", "--url", "ws://127.0.0.1:9")
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorcode"] == "UNAVAILABLE"
    assert "Traceback" not in result.stderr


def test_serve_reads_settings_from_the_environment(tmp_path: Path) -> None:
    """FLOWBUS_* variables configure serve; port 0 shows the real port in the ready line."""
    served = serve(tmp_path, env={"FLOWBUS_HOST": "127.0.0.1", "FLOWBUS_DATA": str(tmp_path / "envdata")})
    try:
        assert not served.ws_url.endswith(":0") and not served.http_url.endswith(":0")
        assert any("websocket:" in line for line in served.output)
    finally:
        assert served.stop() == 0


def test_serve_refuses_a_bad_app(tmp_path: Path) -> None:
    """--app naming something that is not an application exits 2 with a message."""
    result = flowbus("serve", "--ws-port", "0", "--http-port", "0", "--data", str(tmp_path), "--app", "json:dumps")
    assert result.returncode == 2
    assert "not a flowbus.Application" in result.stderr


def test_serve_refuses_a_bad_environment_value(tmp_path: Path) -> None:
    """A FLOWBUS_* value of the wrong type exits 2 naming the variable."""
    result = flowbus("serve", "--data", str(tmp_path), env={"FLOWBUS_WS_PORT": "eighty"})
    assert result.returncode == 2
    assert "FLOWBUS_WS_PORT" in result.stderr


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
async def test_serve_runs_on_the_event_loop_asked_for(tmp_path: Path, loop: str) -> None:
    """``serve --event-loop asyncio`` (or auto: uvloop when installed) serves calls and stops cleanly."""
    served = serve(tmp_path, "--event-loop", loop)
    try:
        async with served.connect() as ws:
            answer = await rpc(ws, {"method": "LIST", "endpoint": "inventory/device"})
            assert answer["success"] is True
    finally:
        assert served.stop() == 0


def test_a_started_bus_freezes_what_startup_made_and_collects_young_objects_less_often() -> None:
    """What `flowbus serve` does to the garbage collector once the bus is up (then undone here)."""
    before = gc.get_threshold()
    try:
        node._settle_collector()
        assert gc.get_threshold() == (node.GC_FIRST_GENERATION, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
