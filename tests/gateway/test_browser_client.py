"""The browser client (/client/flowbus.js), run by Node's standard WebSocket (the browsers' API):
calls, typed errors, a subscription that resumes after its connection drops."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.flowbus.helpers import unique
from tests.support import Served

CHECK = Path(__file__).parent / "browser" / "client_check.mjs"


def test_the_served_client_calls_subscribes_and_resumes(bus: Served, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the browser client with")
    with urllib.request.urlopen(bus.http_url + "/client/flowbus.js", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        served = response.read()
    module = tmp_path / "flowbus.mjs"
    module.write_bytes(served)
    ws_url = bus.http_url.replace("http", "ws", 1) + "/ws"
    command = [node, "--experimental-websocket", str(CHECK), module.as_uri(), ws_url, bus.token or "", unique("ns")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["created"] == "from-js"
    assert report["events"] == [["CREATED", None], ["UPDATED", "while-away"], ["DELETED", "while-away"]]
    assert report["seqsIncrease"] is True
    assert report["error"] == [True, "DO_NOT_EXIST", "string"]
    assert report["listed"] is True
    assert len(served) < 16_000  # small: stated in the README
