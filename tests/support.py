"""Test support: run a real ``flowbus serve`` process and talk to it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect

ADMIN_PASSWORD = "admin-password-for-tests"
PORT = "websocket-port"
GATEWAY = "gateway-ws"
ENTRIES = (PORT, GATEWAY)
"""The two websocket entries of a bus: its websocket port, and ``/ws`` on its HTTP port."""
READY = re.compile(r"FlowBus ready ws=(\S+) http=(\S+)")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    """A running ``flowbus serve`` process."""

    process: subprocess.Popen[str]
    port_url: str
    http_url: str
    data: Path
    log_path: Path
    output: list[str] = field(default_factory=list)
    token: str | None = None
    entry: str = PORT

    @property
    def ws_url(self) -> str:
        """The websocket URL of the entry the tests use: the websocket port, or the gateway's /ws."""
        return self.port_url if self.entry == PORT else "ws" + self.http_url.removeprefix("http") + "/ws"

    def connect(self, path: str = "", token: str | None = "admin") -> Any:
        """Open a websocket on ``path``, with the admin's token unless another (or None) is given."""
        return ws_connect(self.ws_url + path, token=self.token if token == "admin" else token)

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, Any]:
        """Log in over HTTP; return the answer envelope."""
        return http_json(self.http_url + "/api/auth/auth/token/", {"username": username, "password": password})

    def log(self) -> str:
        """Everything the server logged so far (its stderr)."""
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the server and wait for it to exit; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.process.stdout is not None:
            self.output.extend(self.process.stdout.read().splitlines())
            self.process.stdout.close()
        return code


def serve(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30, entry: str = PORT
) -> Served:
    """Start ``flowbus serve`` on free ports with its data in ``workdir/data``; wait for the ready line.

    ``entry`` picks which websocket entry ``ws_url`` (and so ``connect``) leads to.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    log_path = workdir / "server.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWBUS_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})}
    command = [sys.executable, "-m", "flowbus", "serve", "--ws-port", "0", "--http-port", "0"]
    command += ["--data", str(data), *args]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=workdir, env=full_env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        served = _wait_ready(process, data, log_path, timeout)
    except BaseException:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        raise
    served.entry = entry
    return served


def _wait_ready(process: subprocess.Popen[str], data: Path, log_path: Path, timeout: float) -> Served:
    output: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"flowbus serve exited early:\n{log_path.read_text()}")
        output.append(line.rstrip("\n"))
        match = READY.search(line)
        if match:
            served = Served(process, match[1], match[2], data, log_path, output)
            answer = served.login()
            served.token = answer["data"]["token"] if answer.get("success") else None
            return served
    raise RuntimeError("flowbus serve did not become ready")


@contextlib.contextmanager
def serving(workdir: Path, *args: str, env: dict[str, str] | None = None, entry: str = PORT) -> Iterator[Served]:
    """``serve`` for the length of a ``with`` block (fixtures yield from it); stops the bus after."""
    served = serve(workdir, *args, env=env, entry=entry)
    try:
        yield served
    finally:
        served.stop()


async def rpc(ws: ClientConnection, message: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """Send one message (a dict is encoded as JSON) and return the next answer."""
    if isinstance(message, dict):
        message = json.dumps(message)
    await ws.send(message)
    answer: dict[str, Any] = orjson.loads(await ws.recv())
    return answer


def ws_connect(url: str, token: str | None = None, **kwargs: Any) -> Any:
    """Open a websocket to the bus (an async context manager), with a connection-level token if given."""
    if token:
        kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
    return connect(url, compression=None, **kwargs)


def http_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST a JSON body and return the JSON answer, whatever its status."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read() or b"{}")
    return answer


POSTGRES = os.environ.get("FLOWBUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server of the server-backed tests (they skip with one line when none answers)."""


def postgres_answers(dsn: str = POSTGRES) -> bool:
    """Whether a server accepts connections where ``dsn`` points."""
    where = urlsplit(dsn)
    try:
        with socket.create_connection((where.hostname or "127.0.0.1", where.port or 5432), timeout=2):
            return True
    except OSError:
        return False
