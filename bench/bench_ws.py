"""Benchmark S1: OPEN of existing objects over one websocket, FlowBus against its ceiling.

Usage: ``python bench/bench_ws.py [--calls N] [--seconds S] [--in-flight 64] [--json [PATH]] [--smoke]``

One run does this, all on 127.0.0.1:

1. starts a real ``flowbus serve`` (free ports, data in a temporary directory), creates
   ``--objects`` ``inventory/device`` objects (about 100 bytes of fields each), then measures
   scenario S1: one connection, ``--in-flight`` calls pipelined with ``requestid`` (each answer
   sends the next call, so the window stays full), every call an OPEN of one of those objects;
2. starts ``ceiling_ws.py`` (a bare ``websockets`` server that parses each envelope, looks the
   object up in a dict and encodes the answer, all with orjson: the least a bus must do) serving
   the very same objects, and measures it with the same load and parameters;
3. prints, for both, calls/s, p50 and p99 latency, the server process's CPU time per call (its
   utime + stime from ``/proc/<pid>/stat``, which holds up better than calls/s on a noisy
   machine) and the load generator's own CPU time per call (when it nears the server's, the
   client is the bottleneck), then the ratio FlowBus/ceiling.

Each measurement runs for ``--calls`` calls or ``--seconds`` seconds, whichever ends first, after
a warm-up on the same connection. ``--smoke`` makes a few hundred calls per server without warm-up
(for tests: it checks the benchmark still runs, its figures mean little). ``--json`` also writes
the figures as JSON, by default into ``bench/results/``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import queue
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.version import version as websockets_version

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
ENDPOINT = "inventory/device"
FLOWBUS_READY = re.compile(r"FlowBus ready ws=(\S+) http=(\S+)")
CEILING_READY = re.compile(r"ceiling ready ws=(\S+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 30.0

T = TypeVar("T")


# -- what to run ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The parameters of one benchmark run."""

    calls: int
    seconds: float
    in_flight: int
    objects: int
    warmup_calls: int
    warmup_seconds: float


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per server at most (default 20000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per server at most (default 10)")
    parser.add_argument("--in-flight", type=int, default=64, help="calls in flight on the connection (default 64)")
    parser.add_argument("--objects", type=int, default=100, help="objects created and opened (default 100)")
    parser.add_argument(
        "--json", nargs="?", const="", metavar="PATH", help="also write the figures as JSON (default: bench/results/)"
    )
    parser.add_argument("--smoke", action="store_true", help="a few hundred calls per server, no warm-up")
    args = parser.parse_args(argv)
    if min(args.calls, args.in_flight, args.objects) < 1 or args.seconds <= 0:
        parser.error("--calls, --seconds, --in-flight and --objects must be positive")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    if args.smoke:
        return Plan(min(args.calls, 300), args.seconds, args.in_flight, args.objects, 0, 0.0)
    warmup = min(2_000, args.calls)
    return Plan(args.calls, args.seconds, args.in_flight, args.objects, warmup, 2.0)


def device(i: int) -> dict[str, Any]:
    """The fields of bench device ``i``: about 100 bytes of JSON, before id and timestamps."""
    return {
        "name": f"bench-sw-{i:04d}",
        "description": "48-port access switch",
        "location": f"rack {i % 12 + 1}",
        "address": f"10.0.{i // 250}.{i % 250 + 1}",
    }


# -- server processes -------------------------------------------------------------------------


@dataclass
class Server:
    """A server subprocess that printed its ready line."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all its threads) so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is field 3
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


@contextmanager
def running(
    name: str, command: list[str], ready: re.Pattern[str], workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start ``command``, wait for a stdout line matching ``ready`` (group 1 is the URL), stop it after.

    The server's stderr (its log) goes to ``workdir/server.log``.
    """
    log_path = workdir / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    env.pop("PYTHONASYNCIODEBUG", None)  # debug mode would measure asyncio's checks
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        url = _wait_ready(name, process, ready, log_path)
        yield Server(process, url, log_path)
    finally:
        _stop(process)


def _wait_ready(name: str, process: subprocess.Popen[str], ready: re.Pattern[str], log_path: Path) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if not line:
            raise RuntimeError(f"{name} exited early:\n{log_path.read_text()}")
        if match := ready.search(line):
            return match[1]
    raise RuntimeError(f"{name} did not print its ready line in {READY_TIMEOUT:.0f} s")


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    """Hand stdout on line by line (and keep draining it); an empty string means end of output."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put("")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def flowbus_command(data: Path) -> list[str]:
    return [sys.executable, "-m", "flowbus", "serve", "--ws-port", "0", "--http-port", "0", "--data", str(data)]


def ceiling_command(objects: Path) -> list[str]:
    return [sys.executable, str(BENCH / "ceiling_ws.py"), str(objects)]


# -- the load generator -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """What one stretch of load measured."""

    calls: int
    errors: int
    seconds: float
    latencies: list[float]


def with_token(envelope: dict[str, Any], token: str | None) -> dict[str, Any]:
    return envelope if token is None else {**envelope, "token": token}


class OpenCalls:
    """An endless supply of OPEN envelopes, cycling over the object ids, numbered by requestid.

    The envelope up to the requestid is encoded once per object, so the client spends its
    time on the connection rather than on building messages.
    """

    def __init__(self, ids: Sequence[str], token: str | None) -> None:
        self._prefixes = [
            orjson.dumps(with_token({"method": "OPEN", "endpoint": ENDPOINT, "objectid": oid}, token))[:-1]
            + b',"requestid":'
            for oid in ids
        ]
        self._next = 0

    def next(self) -> tuple[int, bytes]:
        requestid = self._next
        self._next += 1
        return requestid, self._prefixes[requestid % len(self._prefixes)] + str(requestid).encode() + b"}"


async def pipeline(ws: ClientConnection, source: OpenCalls, calls: int, seconds: float, in_flight: int) -> Load:
    """Keep ``in_flight`` calls outstanding until ``calls`` were sent or ``seconds`` passed, then drain."""
    sent: dict[int, float] = {}
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + seconds
    while len(sent) < min(in_flight, calls):
        await _send(ws, source, sent)
    issued = len(sent)
    while sent:
        answer = orjson.loads(await ws.recv(decode=False))
        now = time.perf_counter()
        latencies.append(now - sent.pop(answer["requestid"]))
        errors += answer.get("success") is not True
        if issued < calls and now < deadline:
            await _send(ws, source, sent)
            issued += 1
    return Load(len(latencies), errors, time.perf_counter() - started, latencies)


async def _send(ws: ClientConnection, source: OpenCalls, sent: dict[int, float]) -> None:
    requestid, message = source.next()
    sent[requestid] = time.perf_counter()
    await ws.send(message, text=True)


# -- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """One server's row of the table."""

    server: str
    calls: int
    errors: int
    seconds: float
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_call: float
    client_cpu_us_per_call: float


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def figures(name: str, load: Load, server_cpu: float, client_cpu: float) -> Figures:
    ordered = sorted(load.latencies)
    per_call = 1e6 / max(load.calls, 1)
    return Figures(
        server=name,
        calls=load.calls,
        errors=load.errors,
        seconds=load.seconds,
        calls_per_s=load.calls / load.seconds,
        p50_ms=percentile(ordered, 0.50) * 1e3,
        p99_ms=percentile(ordered, 0.99) * 1e3,
        server_cpu_us_per_call=server_cpu * per_call,
        client_cpu_us_per_call=client_cpu * per_call,
    )


async def measure(name: str, server: Server, ws: ClientConnection, source: OpenCalls, plan: Plan) -> Figures:
    """Warm up, then run S1 on ``ws`` while reading both processes' CPU time around it."""
    if plan.warmup_calls:
        await pipeline(ws, source, plan.warmup_calls, plan.warmup_seconds, plan.in_flight)
    server_before, client_before = server.cpu_seconds(), time.process_time()
    load = await pipeline(ws, source, plan.calls, plan.seconds, plan.in_flight)
    server_cpu, client_cpu = server.cpu_seconds() - server_before, time.process_time() - client_before
    return figures(name, load, server_cpu, client_cpu)


# -- setting up -------------------------------------------------------------------------------


async def log_in(ws: ClientConnection, password: str) -> str | None:
    """Log in as ``admin`` and return the token; None when the bus has no authentication engine."""
    login = {"method": "CREATE", "endpoint": "auth/token", "data": {"username": "admin", "password": password}}
    await ws.send(orjson.dumps(login), text=True)
    answer = orjson.loads(await ws.recv(decode=False))
    if answer.get("errorcode") == "NO_SUCH_ENDPOINT":
        return None
    if answer.get("success") is not True:
        raise RuntimeError(f"login failed: {answer}")
    token: str = answer["data"]["token"]
    return token


async def create_objects(ws: ClientConnection, count: int, token: str | None) -> list[dict[str, Any]]:
    """CREATE ``count`` devices (all in flight at once) and return them as stored."""
    for i in range(count):
        envelope = with_token({"method": "CREATE", "endpoint": ENDPOINT, "data": device(i), "requestid": i}, token)
        await ws.send(orjson.dumps(envelope), text=True)
    stored: list[dict[str, Any]] = [{}] * count
    for _ in range(count):
        answer = orjson.loads(await ws.recv(decode=False))
        if answer.get("success") is not True:
            raise RuntimeError(f"CREATE failed: {answer}")
        stored[answer["requestid"]] = answer["data"]
    return stored


@dataclass(frozen=True, slots=True)
class Workload:
    """What FlowBus was loaded with, so that the ceiling gets the very same messages."""

    objects: list[dict[str, Any]]
    token: str | None

    def calls(self) -> OpenCalls:
        return OpenCalls([obj["id"] for obj in self.objects], self.token)


async def bench_flowbus(server: Server, password: str, plan: Plan) -> tuple[Figures, Workload]:
    async with connect(server.url, compression=None) as ws:
        token = await log_in(ws, password)
        workload = Workload(await create_objects(ws, plan.objects, token), token)
        result = await measure("FlowBus", server, ws, workload.calls(), plan)
    return result, workload


async def bench_ceiling(server: Server, workload: Workload, plan: Plan) -> Figures:
    async with connect(server.url, compression=None) as ws:
        return await measure("ceiling", server, ws, workload.calls(), plan)


def run_async(main: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``main`` on a fresh event loop, giving up after ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await main

    return asyncio.run(bounded())


def run_both(plan: Plan, workdir: Path) -> tuple[Figures, Figures, Workload]:
    """Measure FlowBus, then the ceiling with the same objects and messages."""
    timeout = 2 * (plan.seconds + plan.warmup_seconds) + 120
    password = secrets.token_urlsafe(18)
    (workdir / "flowbus").mkdir()
    command, env = flowbus_command(workdir / "flowbus" / "data"), {"FLOWBUS_ADMIN_PASSWORD": password}
    with running("flowbus serve", command, FLOWBUS_READY, workdir / "flowbus", env) as server:
        flowbus, workload = _or_log(server, lambda: run_async(bench_flowbus(server, password, plan), timeout))
    objects_path = workdir / "objects.json"
    objects_path.write_bytes(orjson.dumps(workload.objects))
    with running("ceiling_ws.py", ceiling_command(objects_path), CEILING_READY, workdir) as server:
        ceiling = _or_log(server, lambda: run_async(bench_ceiling(server, workload, plan), timeout))
    return flowbus, ceiling, workload


def _or_log(server: Server, work: Callable[[], T]) -> T:
    """Run ``work()``; if it fails, show the end of the server's log first."""
    try:
        return work()
    except BaseException:
        print(f"--- the server's log ends:\n{server.log_tail()}", file=sys.stderr)
        raise


# -- reporting --------------------------------------------------------------------------------


def event_loop_name() -> str:
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop (servers)"


def git_commit() -> str | None:
    """The commit of the checkout being measured (with ``+`` when it has local changes), if known."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def describe(plan: Plan, workload: Workload) -> dict[str, Any]:
    return {
        "scenario": "S1",
        "commit": git_commit(),
        "what": f"OPEN of an existing {ENDPOINT} object, 1 connection, {plan.in_flight} calls in flight",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "plan": asdict(plan),
        "object_bytes": len(orjson.dumps(workload.objects[0])),
        "token": workload.token is not None,
        "python": platform.python_version(),
        "event_loop": event_loop_name(),
        "websockets": websockets_version,
        "cpus": os.cpu_count(),
        "client": "Python asyncio + websockets (this script)",
    }


def ratios(flowbus: Figures, ceiling: Figures) -> dict[str, float]:
    return {
        "calls_per_s": flowbus.calls_per_s / ceiling.calls_per_s,
        "server_cpu_per_call": flowbus.server_cpu_us_per_call / ceiling.server_cpu_us_per_call
        if ceiling.server_cpu_us_per_call
        else float("nan"),
    }


HEADER = f"{'server':<8} {'calls':>7} {'errors':>6} {'s':>6} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
HEADER += f" {'server CPU us/call':>18} {'client CPU us/call':>18}"


def row(f: Figures) -> str:
    return (
        f"{f.server:<8} {f.calls:>7} {f.errors:>6} {f.seconds:>6.2f} {f.calls_per_s:>8.0f} {f.p50_ms:>7.2f}"
        f" {f.p99_ms:>7.2f} {f.server_cpu_us_per_call:>18.0f} {f.client_cpu_us_per_call:>18.0f}"
    )


def table(meta: dict[str, Any], flowbus: Figures, ceiling: Figures) -> str:
    ratio = ratios(flowbus, ceiling)
    return "\n".join(
        [
            f"S1: {meta['what']}, {meta['plan']['objects']} objects of {meta['object_bytes']} bytes,"
            f" {'a token in every call' if meta['token'] else 'no token (the bus has no auth engine)'}",
            f"    Python {meta['python']}, {meta['event_loop']} event loop, websockets {meta['websockets']},"
            f" {meta['cpus']} CPUs, client: {meta['client']}",
            "",
            HEADER,
            row(flowbus),
            row(ceiling),
            "",
            f"ratio FlowBus/ceiling: {ratio['calls_per_s']:.2f} of the calls/s,"
            f" {ratio['server_cpu_per_call']:.1f}x the server CPU per call",
        ]
    )


def write_json(path: Path, meta: dict[str, Any], flowbus: Figures, ceiling: Figures) -> None:
    report = {**meta, "results": [asdict(flowbus), asdict(ceiling)], "ratio": ratios(flowbus, ceiling)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


def json_path(value: str) -> Path:
    if value:
        return Path(value)
    return RESULTS / f"s1-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-") as tmp:
        flowbus, ceiling, workload = run_both(plan, Path(tmp))
    meta = describe(plan, workload)
    print(table(meta, flowbus, ceiling))
    if args.json is not None:
        path = json_path(args.json)
        write_json(path, meta, flowbus, ceiling)
        print(f"figures written to {path}")
    if flowbus.errors or ceiling.errors:
        print("some calls failed: the figures are not comparable", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
