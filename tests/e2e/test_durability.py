"""Durability and shutdown of a served bus: kill -9 loses no acknowledged write; SIGINT lets calls finish.

The kill test runs writers on several connections, counts success answers as they arrive, and
sends SIGKILL from inside the reader the moment the last counted answer is read, while dozens
of writes are still in flight. Every write the bus acknowledged must be there after a restart;
a write that was in flight may or may not be.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from tests.support import ADMIN_PASSWORD, ENTRIES, ROOT, Served, rpc, serve

DEVICE = "inventory/device"
NAMESPACE = "durable"
CONNECTIONS = 6
WORKERS_PER_CONNECTION = 10
KILL_AFTER = 1500
GONE = "gone"


@contextlib.contextmanager
def reaped(served: Served) -> Iterator[Served]:
    """Make sure the served process is gone when the block is left, however it is left."""
    try:
        yield served
    finally:
        if served.process.poll() is None:
            served.stop(signal.SIGKILL)


@dataclass
class Op:
    """One write sent to the bus."""

    objectid: str
    method: str
    data: dict[str, Any] | None


@dataclass
class Ledger:
    """What was sent and what was acknowledged, per object."""

    served: Served
    ops: dict[str, Op] = field(default_factory=dict)
    acked: dict[str, dict[str, Any] | str] = field(default_factory=dict)
    in_flight: dict[str, Op] = field(default_factory=dict)
    answers: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    killed: asyncio.Event = field(default_factory=asyncio.Event)

    def sent(self, requestid: str, op: Op) -> None:
        self.ops[requestid] = op
        self.in_flight[op.objectid] = op

    def answered(self, answer: dict[str, Any]) -> None:
        """Record an answer; SIGKILL the bus when the KILL_AFTER-th one is read."""
        op = self.ops[answer["requestid"]]
        if not answer["success"]:
            self.failures.append(answer)
            self.served.process.kill()
            self.killed.set()
            return
        self.acked[op.objectid] = GONE if op.method == "DELETE" else answer["data"]
        if self.in_flight.get(op.objectid) is op:
            del self.in_flight[op.objectid]
        self.answers += 1
        if self.answers == KILL_AFTER:
            self.served.process.kill()
            self.killed.set()


class Connection:
    """A websocket with many calls in flight, answers matched by requestid."""

    def __init__(self, ws: ClientConnection, ledger: Ledger, name: str) -> None:
        self.ws = ws
        self.ledger = ledger
        self.name = name
        self.ids = itertools.count()
        self.pending: dict[str, asyncio.Future[None]] = {}
        self.reader = asyncio.create_task(self._read())

    async def write(self, op: Op) -> None:
        requestid = f"{self.name}-{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.pending[requestid] = future
        self.ledger.sent(requestid, op)
        message: dict[str, Any] = {
            "method": op.method,
            "endpoint": DEVICE,
            "namespace": NAMESPACE,
            "requestid": requestid,
        }
        if op.method == "CREATE":
            message["data"] = op.data
        else:
            message["objectid"] = op.objectid
            if op.data is not None:
                message["data"] = op.data
        await self.ws.send(json.dumps(message))
        await future

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                answer = orjson.loads(raw)
                self.ledger.answered(answer)
                self.pending.pop(answer["requestid"]).set_result(None)
        except ConnectionClosed:
            pass


async def writer(connection: Connection, name: str) -> None:
    """Objects one after another: CREATE, two UPDATEs, and a DELETE for every third."""
    for k in itertools.count():
        objectid = f"{name}-{k}"
        await connection.write(Op(objectid, "CREATE", {"id": objectid, "name": objectid, "step": 0}))
        await connection.write(Op(objectid, "UPDATE", {"step": 1, "location": f"rack {k}"}))
        await connection.write(Op(objectid, "UPDATE", {"step": 2}))
        if k % 3 == 0:
            await connection.write(Op(objectid, "DELETE", None))


def user_fields(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("created", "updated", "version")}


def applied(before: dict[str, Any] | str | None, op: Op) -> dict[str, Any] | str:
    """The user fields of an object after ``op`` (GONE if deleted)."""
    if op.method == "DELETE":
        return GONE
    if op.method == "CREATE":
        return dict(op.data or {})
    assert isinstance(before, dict)
    return {**user_fields(before), **(op.data or {})}


async def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """SIGKILL right after an acknowledged write: after a restart every acknowledged write is there."""
    with reaped(serve(tmp_path)) as served:
        ledger = Ledger(served)
        await run_until_killed(served, ledger)
        assert served.stop() == -signal.SIGKILL
    assert ledger.failures == []
    assert ledger.answers >= KILL_AFTER
    assert ledger.in_flight, "the kill should catch writes in flight"

    with reaped(serve(tmp_path)) as restarted:
        await check_acknowledged(restarted, ledger)
        assert restarted.stop() == 0


async def run_until_killed(served: Served, ledger: Ledger) -> None:
    """Write from every connection until the ledger has killed the bus."""
    sockets = [await served.connect() for _ in range(CONNECTIONS)]
    try:
        connections = [Connection(ws, ledger, f"c{i}") for i, ws in enumerate(sockets)]
        writers = [
            asyncio.create_task(writer(connection, f"{connection.name}w{w}"))
            for connection in connections
            for w in range(WORKERS_PER_CONNECTION)
        ]
        async with asyncio.timeout(60):  # a hang guard
            await ledger.killed.wait()
            await asyncio.gather(*(connection.reader for connection in connections))
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
    finally:
        for ws in sockets:
            await ws.close()


async def check_acknowledged(restarted: Served, ledger: Ledger) -> None:
    """Every acknowledged write is there; a write in flight at the kill is absent or whole."""
    async with restarted.connect() as ws:
        touched = {op.objectid for op in ledger.ops.values()}
        for objectid in sorted(touched):
            answer = await rpc(ws, {"method": "OPEN", "endpoint": DEVICE, "namespace": NAMESPACE, "objectid": objectid})
            found: dict[str, Any] | str = answer["data"] if answer["success"] else GONE
            if not answer["success"]:
                assert answer["errorcode"] == "DO_NOT_EXIST"
            acked = ledger.acked.get(objectid, GONE)  # never acknowledged: its CREATE may be lost
            pending = ledger.in_flight.get(objectid)
            if found == acked:
                continue  # exactly what was acknowledged, timestamps included (or absent, never acknowledged)
            assert pending is not None, f"{objectid}: acknowledged {acked}, found {found}"
            expected = applied(acked, pending)
            assert (found if found == GONE else user_fields(found)) == expected, objectid  # type: ignore[arg-type]
        stored: list[str] = []
        for page in itertools.count():
            answer = await rpc(
                ws,
                {
                    "method": "LIST",
                    "endpoint": DEVICE,
                    "namespace": NAMESPACE,
                    "parameters": {"limit": 1000, "page": page},
                },
            )
            stored += [obj["id"] for obj in answer["data"]]
            if len(answer["data"]) < 1000:
                break
        assert set(stored) <= touched
        live = {objectid for objectid, state in ledger.acked.items() if state != GONE}
        assert live - set(ledger.in_flight) <= set(stored)


# -- graceful shutdown --------------------------------------------------------------------------

APP = ("--app", "tests.apps:create_app")


async def until(ws: ClientConnection, message: dict[str, Any], check: Any) -> dict[str, Any]:
    """Repeat a call until ``check(answer)`` holds (polls; pytest's timeout is the deadline)."""
    while True:
        answer = await rpc(ws, message)
        if check(answer):
            return answer
        await asyncio.sleep(0.01)


async def closed_with(ws: ClientConnection) -> int | None:
    """Wait for the server to close ``ws``; return the close code it sent."""
    with pytest.raises(ConnectionClosedOK) as info:
        async with asyncio.timeout(60):  # a hang guard
            while True:
                await ws.recv()
    return info.value.rcvd.code if info.value.rcvd is not None else None


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("finishes", [True, False], ids=["call-finishes-in-grace", "grace-runs-out"])
async def test_sigint_with_a_call_in_flight(tmp_path: Path, finishes: bool, entry: str) -> None:
    """SIGINT: new calls answer UNAVAILABLE, the blocked call finishes (or answers UNAVAILABLE once the
    grace period is over), connections close with 1001, exit status 0, and a restart sees the data."""
    grace = "60" if finishes else "0.1"
    gate = {"method": "RUN", "endpoint": "testing/gate", "objectid": "shutdown"}
    with reaped(serve(tmp_path, *APP, env={"FLOWBUS_SHUTDOWN_GRACE": grace}, entry=entry)) as served:
        created = await shut_down_while_blocked(served, gate, finishes)
        assert served.stop() == 0
        assert "FlowBus stopped" in served.output

    with reaped(serve(tmp_path)) as restarted:
        async with restarted.connect() as ws:
            opened = await rpc(ws, {"method": "OPEN", "endpoint": DEVICE, "objectid": created["data"]["id"]})
            assert opened["data"] == created["data"]
        assert restarted.stop() == 0


async def shut_down_while_blocked(served: Served, gate: dict[str, Any], finishes: bool) -> dict[str, Any]:
    """SIGINT with a call blocked; check the answers and closes; return an object created before."""
    # The blocked call is seed-style: its endpoint comes from the connection's path.
    async with served.connect("/testing/gate") as ws, served.connect() as control:
        created = await rpc(ws, {"method": "CREATE", "endpoint": DEVICE, "data": {"name": "kept"}})
        await ws.send(json.dumps({"method": "RUN", "objectid": "shutdown", "requestid": "blocked"}))
        await until(control, {**gate, "data": {"action": "status"}}, lambda a: a["data"]["waiting"] == 1)

        served.process.send_signal(signal.SIGINT)
        refused = await until(control, {"method": "LIST", "endpoint": DEVICE}, lambda a: not a["success"])
        assert refused["errorcode"] == "UNAVAILABLE"
        # Shutdown has begun and the call is still blocked: only SIGUSR1 releases it (tests/apps.py).
        if finishes:
            served.process.send_signal(signal.SIGUSR1)
        answer = orjson.loads(await ws.recv())
        assert answer["requestid"] == "blocked"
        if finishes:
            assert answer["success"] is True
            assert answer["data"] == {"gate": "shutdown", "released": True}
        else:
            assert answer["success"] is False
            assert answer["errorcode"] == "UNAVAILABLE"
        assert await closed_with(ws) == 1001
        assert await closed_with(control) == 1001
    return created


@pytest.mark.parametrize("entry", ENTRIES)
async def test_sigterm_idle_bus_exits_0(tmp_path: Path, entry: str) -> None:
    """SIGTERM stops an idle bus with exit status 0, closing its connections with 1001."""
    with reaped(serve(tmp_path, entry=entry)) as served:
        async with served.connect() as ws:
            assert (await rpc(ws, {"method": "LIST", "endpoint": DEVICE}))["success"] is True
            served.process.send_signal(signal.SIGTERM)
            assert await closed_with(ws) == 1001
        assert served.stop() == 0


# -- startup failures ---------------------------------------------------------------------------


def serve_fails(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``flowbus serve`` expecting it to fail at startup (and exit: the timeout is a hang guard)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWBUS_ADMIN_PASSWORD": ADMIN_PASSWORD}
    command = [sys.executable, "-m", "flowbus", "serve", "--data", str(workdir / "data"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, timeout=60)


@pytest.mark.parametrize("busy", ["ws", "http"])
def test_port_in_use_exits_1(tmp_path: Path, busy: str) -> None:
    """A port in use makes serve exit 1 with a one-line reason, after undoing what it started."""
    served = serve(tmp_path / "first")
    try:
        port = (served.ws_url if busy == "ws" else served.http_url).rsplit(":", 1)[1]
        ports = ["--ws-port", port, "--http-port", "0"] if busy == "ws" else ["--ws-port", "0", "--http-port", port]
        result = serve_fails(tmp_path / "second", *ports)
    finally:
        served.stop()
    assert result.returncode == 1
    assert "flowbus: cannot start:" in result.stderr
    assert "in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert "FlowBus ready" not in result.stdout


def test_failing_endpoint_startup_exits_1(tmp_path: Path) -> None:
    """An endpoint whose startup raises makes serve exit 1, with the traceback in the log."""
    result = serve_fails(tmp_path, "--app", "tests.apps:create_broken_app")
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "Traceback" in result.stderr and "RuntimeError" in result.stderr
