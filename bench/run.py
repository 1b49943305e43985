"""FlowBus's benchmark: six scenarios, each against FlowBus and against the ceiling of what it is built on.

Usage: ``python bench/run.py [--scenarios S1,S2,...] [--calls N] [--seconds S] [--smoke] [--json PATH]``
or, against a bus that is already running on this machine:
``python bench/run.py --ws ws://127.0.0.1:8765 [--http http://127.0.0.1:8080] --password P [--pid PID]``

Everything runs on 127.0.0.1. Unless given a running bus, it starts ``flowbus serve`` (free ports,
a temporary data directory, authentication on with a random admin password), logs in, creates
``--objects`` ``inventory/device`` objects, starts the ceilings (bench/ceiling_ws.py,
bench/ceiling_aiohttp.py, bench/ceiling_sqlite.py) and measures:

- S1 pipelined: one connection, ``--in-flight`` OPEN calls in flight (each answer sends the next);
- S2 fan-in: ``--connections`` connections, one OPEN in flight on each;
- S3 HTTP: the gateway under ``wrk -t1 -c<connections>``, GET (OPEN) of the objects in turn;
- S4 writes: ``--connections`` connections, one CREATE in flight on each (answered after its commit);
- S4pg writes to PostgreSQL: S4 against a second bus serving ``--store`` ``--postgres`` (a fresh
  schema, dropped afterwards), compared with bench/ceiling_asyncpg.py; only when that server answers;
- S5 idle: ``--idle-connections`` authenticated websocket connections held open; server RSS per connection;
- S6 flows: ``--connections`` connections, each running a 3-state flow (call inventory/device
  CREATE, set, end) one execution at a time, answered when it ended (every transition
  committed); its writes/s (executions/s x the commits per execution read from the bus's change
  log) beside the aiosqlite write ceiling of S4; then the time from an event to the transition it
  causes, one event at a time, while ``--waiting`` executions wait (p50/p99);
- S7 fan-out: ``--subscribers`` connections SUBSCRIBE to ``inventory/device``; one writer makes
  ``--fanout-writes`` CREATEs one at a time; events delivered per second and the time from sending
  a write to its event's arrival (p50/p99), beside a bare websockets broadcast ceiling
  (bench/ceiling_broadcast.py).

Each row's load ends after ``--calls`` calls or ``--seconds`` seconds, whichever comes first
(S3: after ``--seconds``, wrk has no call limit). It is given in ``--rounds`` rounds, in which
FlowBus and its ceilings take turns, each round after a warm-up on the same connections: a
machine that is busier for a while then slows both sides of a ratio, not one. The
websocket load comes from bench/loadgen.mjs (Node, ``ws``), not Python, so that the client is not
the bottleneck. It prints a table and writes it as JSON (bench/results/ unless ``--json PATH``).
Linux only: CPU time and memory are read from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from flowbench import fanout, flows, load, report, servers, workload
from flowbench.load import LoadError, NodeLoad, Progress
from flowbench.report import CEILING, FLOWBUS, Row
from flowbench.servers import BENCH, CEILING_READY, FLOWBUS_READY, ROOT, Server, running

RESULTS = BENCH / "results"
SCENARIOS = ("S1", "S2", "S3", "S4", "S4pg", "S5", "S6", "S7")
POSTGRES = os.environ.get("FLOWBUS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SMOKE_CALLS = 300
SMOKE_IDLE = 200
SMOKE_WAITING = 50
SMOKE_SUBSCRIBERS = 50
SMOKE_WRITES = 20

# The servers, by role: (row name, kind, the role it is compared with)
ROLES = {
    "fb_ws": ("FlowBus ws", FLOWBUS, "ws"),
    "ws": ("ceiling websockets", CEILING, None),
    "fb_gw": ("FlowBus gateway /ws", FLOWBUS, "aio_ws"),
    "aio_ws": ("ceiling aiohttp ws", CEILING, None),
    "fb_http": ("FlowBus gateway HTTP", FLOWBUS, "aio_http"),
    "aio_http": ("ceiling aiohttp HTTP", CEILING, None),
    "sqlite": ("ceiling aiosqlite", CEILING, None),
    "fb_pg": ("FlowBus ws (pg)", FLOWBUS, "asyncpg"),
    "asyncpg": ("ceiling asyncpg", CEILING, None),
    "broadcast": ("ceiling broadcast", CEILING, None),
}
WS_ROLES = ("fb_ws", "ws", "fb_gw", "aio_ws")


# -- what to run ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The parameters of one run."""

    scenarios: tuple[str, ...]
    calls: int
    seconds: float
    connections: int
    in_flight: int
    idle_connections: int
    objects: int
    warmup_calls: int
    warmup_seconds: float
    batch: int
    waiting: int
    subscribers: int
    fanout_writes: int
    smoke: bool
    rounds: int

    @property
    def round_calls(self) -> int:
        return max(1, self.calls // self.rounds)

    @property
    def round_seconds(self) -> float:
        return self.seconds / self.rounds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated, e.g. S1,S3 (default: all)")
    add("--calls", type=int, default=200_000, help="calls per measurement at most (default 200000)")
    add("--seconds", type=float, default=10.0, help="seconds per measurement at most (default 10)")
    rounds = "S1-S4: rounds a row's calls and seconds are split into, servers taking turns (default 3)"
    add("--rounds", type=int, default=3, help=rounds)
    add("--connections", type=int, default=50, help="connections of S2, S3 and S4 (default 50)")
    add("--in-flight", type=int, default=64, help="calls in flight on S1's connection (default 64)")
    add("--idle-connections", type=int, default=10_000, help="connections held open in S5 (default 10000)")
    add("--objects", type=int, default=100, help="objects created, then opened in turn (default 100)")
    add("--batch", type=int, default=100, help="S5 opens connections this many at a time (default 100)")
    add("--waiting", type=int, default=1000, help="S6: executions waiting while events are timed (default 1000)")
    add("--subscribers", type=int, default=1000, help="S7: subscribed connections (default 1000)")
    add("--fanout-writes", type=int, default=200, help="S7: writes whose events fan out (default 200)")
    add("--postgres", default=POSTGRES, metavar="URL", help="S4pg's server (or FLOWBUS_BENCH_POSTGRES)")
    add("--smoke", action="store_true", help="a few hundred calls per row, 200 idle connections, no warm-up")
    add("--json", metavar="PATH", help="where to write the JSON report (default: bench/results/bench-<time>.json)")
    running_bus = parser.add_argument_group("a running bus (instead of starting one; loopback only)")
    running_bus.add_argument("--ws", metavar="URL", help="its websocket URL, e.g. ws://127.0.0.1:8765")
    running_bus.add_argument("--http", metavar="URL", help="its gateway URL, e.g. http://127.0.0.1:8080")
    running_bus.add_argument("--user", default="admin", help="log in as this user (default admin)")
    running_bus.add_argument("--password", default=os.environ.get("FLOWBUS_PASSWORD"), help="(or FLOWBUS_PASSWORD)")
    running_bus.add_argument("--token", default=os.environ.get("FLOWBUS_TOKEN"), help="(or FLOWBUS_TOKEN)")
    running_bus.add_argument("--pid", type=int, help="its process id, for its CPU time and memory")
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.calls, args.connections, args.in_flight, args.idle_connections, args.objects, args.batch) < 1:
        parser.error("--calls, --connections, --in-flight, --idle-connections, --objects and --batch must be >= 1")
    if not 1 <= args.rounds <= args.calls:
        parser.error("--rounds must be between 1 and --calls")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    unknown = set(scenario_list(args.scenarios)) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    for url in (args.ws, args.http):
        if url and not workload.is_loopback(url):
            parser.error(f"{url}: the benchmark only runs against this machine (127.0.0.1, ::1, localhost)")
    if args.http and not args.ws:
        parser.error("--http needs --ws (the benchmark logs in and creates its objects over websockets)")
    if args.ws and not (args.password or args.token):
        parser.error("--ws needs --password or --token (or FLOWBUS_PASSWORD / FLOWBUS_TOKEN)")
    if args.pid is not None and not Path(f"/proc/{args.pid}").is_dir():
        parser.error(f"--pid {args.pid}: no such process")


def scenario_list(value: str) -> tuple[str, ...]:
    """``"s3,S1"`` -> ``("S1", "S3")``: the table keeps the scenarios' own order."""
    canonical = {scenario.upper(): scenario for scenario in SCENARIOS}
    chosen = {canonical.get(part.strip().upper(), part.strip()) for part in value.split(",") if part.strip()}
    return tuple(sorted(chosen, key=lambda s: SCENARIOS.index(s) if s in SCENARIOS else len(SCENARIOS)))


def make_plan(args: argparse.Namespace) -> Plan:
    plan = Plan(
        scenarios=scenario_list(args.scenarios),
        calls=args.calls,
        seconds=args.seconds,
        connections=args.connections,
        in_flight=args.in_flight,
        idle_connections=args.idle_connections,
        objects=args.objects,
        warmup_calls=min(10_000, args.calls),
        warmup_seconds=2.0,
        batch=args.batch,
        waiting=args.waiting,
        subscribers=args.subscribers,
        fanout_writes=args.fanout_writes,
        smoke=args.smoke,
        rounds=args.rounds,
    )
    if not args.smoke:
        return plan
    return replace(
        plan,
        calls=min(plan.calls, SMOKE_CALLS),
        seconds=min(plan.seconds, 5.0),
        idle_connections=min(plan.idle_connections, SMOKE_IDLE),
        waiting=min(plan.waiting, SMOKE_WAITING),
        subscribers=min(plan.subscribers, SMOKE_SUBSCRIBERS),
        fanout_writes=min(plan.fanout_writes, SMOKE_WRITES),
        warmup_calls=0,
        warmup_seconds=0.0,
        rounds=1,
    )


# -- the servers ------------------------------------------------------------------------------


@dataclass
class Target:
    """Where one row's load goes: a websocket URL (token included) or an HTTP base URL."""

    role: str
    url: str | None
    pid: int | None
    note: str | None = None

    @property
    def name(self) -> str:
        return ROLES[self.role][0]

    def row(self, scenario: str) -> Row:
        name, kind, versus = ROLES[self.role]
        return Row(scenario, name, kind, ROLES[versus][0] if versus else None, note=self.note)


class OwnBus:
    """The ``flowbus serve`` this run started (and may restart, for S5's memory figures)."""

    def __init__(self, workdir: Path, password: str) -> None:
        self.workdir = workdir
        self.password = password
        self.stack = ExitStack()
        self.server: Server | None = None

    def start(self) -> Server:
        command = servers.flowbus_command(self.workdir / "data")
        env = {"FLOWBUS_ADMIN_PASSWORD": self.password}
        self.server = self.stack.enter_context(running("flowbus serve", command, FLOWBUS_READY, self.workdir, env))
        return self.server

    def stop(self) -> None:
        self.stack.close()
        self.server = None

    def restart(self) -> Server:
        self.stop()
        return self.start()


@dataclass
class Bench:
    """Everything a scenario needs: the plan, the targets, the envelopes, the objects."""

    plan: Plan
    workdir: Path
    token: str
    objects: list[dict[str, Any]]
    targets: dict[str, Target] = field(default_factory=dict)
    bus: OwnBus | None = None
    wrk_note: str | None = None
    postgres: str = POSTGRES

    @property
    def ids(self) -> list[str]:
        return [obj["id"] for obj in self.objects]

    def envelopes(self, kind: str) -> Path:
        path = self.workdir / f"{kind}.json"
        if not path.exists():
            prefixes = workload.open_prefixes(self.ids) if kind == "open" else workload.create_prefixes(100)
            workload.write_prefixes(path, prefixes)
        return path


def flowbus_targets(ws_url: str, http_url: str | None, token: str, pid: int | None, probe_id: str) -> dict[str, Target]:
    """FlowBus's three entries; the gateway's ``/ws`` only if it answers an OPEN."""
    gateway_ws = workload.with_token(workload.gateway_ws_url(http_url), token) if http_url else None
    note = "not available: no --http URL given" if http_url is None else None
    if gateway_ws is not None:
        note = asyncio.run(workload.probe(gateway_ws, probe_id))
    return {
        "fb_ws": Target("fb_ws", workload.with_token(root_path(ws_url), token), pid),
        "fb_gw": Target("fb_gw", gateway_ws, pid, note),
        "fb_http": Target("fb_http", http_url, pid, None if http_url else "not available: no --http URL given"),
    }


def root_path(url: str) -> str:
    """``ws://host:port`` -> ``ws://host:port/`` (a query needs a path before it)."""
    return url if urlsplit(url).path else url + "/"


def start_ceilings(stack: ExitStack, bench: Bench) -> None:
    """Start the ceilings the chosen scenarios need, serving the very objects FlowBus serves."""
    objects_path = bench.workdir / "objects.json"
    objects_path.write_bytes(orjson.dumps(bench.objects))
    wanted = set(bench.plan.scenarios)
    if wanted & {"S1", "S2", "S5"}:
        server = stack.enter_context(ceiling("ceiling_ws.py", objects_path, bench.workdir / "ceiling_ws"))
        bench.targets["ws"] = Target("ws", server.urls["ws"] + "/", server.pid)
    if wanted & {"S1", "S2", "S3", "S5"}:
        server = stack.enter_context(ceiling("ceiling_aiohttp.py", objects_path, bench.workdir / "ceiling_aiohttp"))
        bench.targets["aio_ws"] = Target("aio_ws", server.urls["ws"], server.pid)
        bench.targets["aio_http"] = Target("aio_http", server.urls["http"], server.pid)
    if wanted & {"S4", "S6"}:
        workdir = bench.workdir / "ceiling_sqlite"
        server = stack.enter_context(ceiling("ceiling_sqlite.py", workdir / "ceiling.db", workdir))
        bench.targets["sqlite"] = Target("sqlite", server.urls["ws"] + "/", server.pid)
    if "S4pg" in wanted:
        start_postgres_pair(stack, bench)
    if "S7" in wanted:
        server = stack.enter_context(ceiling("ceiling_broadcast.py", Path("-"), bench.workdir / "ceiling_broadcast"))
        bench.targets["broadcast"] = Target("broadcast", server.urls["ws"] + "/", server.pid)


def start_postgres_pair(stack: ExitStack, bench: Bench) -> None:
    """S4pg's servers: a bus on ``--store`` PostgreSQL and the bare asyncpg ceiling, each in a
    fresh schema of its own, dropped when the run ends; notes instead when they cannot run."""
    note = None
    if bench.bus is None:
        note = "not available: a running bus was given (S4pg starts its own)"
    elif not workload.postgres_answers(bench.postgres):
        note = "not available: no PostgreSQL server answers at " + workload.without_password(bench.postgres)
    if note is not None:
        bench.targets["fb_pg"] = Target("fb_pg", None, None, note)
        bench.targets["asyncpg"] = Target("asyncpg", None, None, note)
        return
    assert bench.bus is not None  # else a note was set above
    suffix = secrets.token_hex(6)
    schemas = (f"bench_flowbus_{suffix}", f"bench_ceiling_{suffix}")
    stack.callback(workload.drop_schemas, bench.postgres, schemas)  # after both servers stopped
    workdir = bench.workdir / "flowbus_pg"
    command = [*servers.flowbus_command(workdir / "data"), "--store", f"{bench.postgres}?schema={schemas[0]}"]
    env = {"FLOWBUS_ADMIN_PASSWORD": bench.bus.password}
    server = stack.enter_context(running("flowbus serve --store postgresql", command, FLOWBUS_READY, workdir, env))
    token = asyncio.run(workload.log_in(server.urls["ws"], "admin", bench.bus.password))
    bench.targets["fb_pg"] = Target("fb_pg", workload.with_token(root_path(server.urls["ws"]), token), server.pid)
    command = [sys.executable, str(BENCH / "ceiling_asyncpg.py"), bench.postgres, schemas[1]]
    ceiling_dir = bench.workdir / "ceiling_asyncpg"
    server = stack.enter_context(running("ceiling_asyncpg.py", command, CEILING_READY, ceiling_dir))
    bench.targets["asyncpg"] = Target("asyncpg", server.urls["ws"] + "/", server.pid)


@contextmanager
def ceiling(script: str, argument: Path, workdir: Path) -> Iterator[Server]:
    with running(script, servers.ceiling_command(script, argument), CEILING_READY, workdir) as server:
        yield server


# -- measuring --------------------------------------------------------------------------------


def fill(row: Row, result: dict[str, Any]) -> Row:
    """Copy a load generator's result into ``row``."""
    row.calls = int(result["calls"])
    row.errors = int(result["errors"])
    row.seconds = float(result["seconds"])
    row.rate = float(result["rate"])
    row.p50_us, row.p99_us = result.get("p50_us"), result.get("p99_us")
    row.server_cpu_us = report.per_call_us(result.get("server_cpu_s"), row.calls)
    row.client_cpu_us = report.per_call_us(result.get("client_cpu_s"), row.calls)
    if result.get("first_error"):
        print(f"{row.scenario} {row.server}: {row.errors} errors, the first: {result['first_error']}", file=sys.stderr)
    return row


def measure_load(bench: Bench, scenario: str, target: Target, mode: str, envelopes: Path, turn: int) -> Row:
    """S1, S2, S4: the Node client, pipelined or fan-in; one round's share of the calls and seconds."""
    row = target.row(scenario)
    if not row.measured:
        return row
    plan = bench.plan
    connections, in_flight = (1, plan.in_flight) if mode == "pipelined" else (plan.connections, 1)
    spec = NodeLoad(
        mode=mode,
        url=str(target.url),
        envelopes=envelopes,
        connections=connections,
        in_flight=in_flight,
        calls=plan.round_calls,
        seconds=plan.round_seconds,
        warmup_calls=plan.warmup_calls,
        warmup_seconds=plan.warmup_seconds,
        server_pid=target.pid,
    )
    progress = Progress(f"{scenario} {target.name}{round_label(plan, turn)}")
    try:
        result = load.run_node(spec, progress)
    except LoadError as exc:
        progress.finish("failed")
        row.note = f"failed: {exc}"
        return row
    progress.finish()
    return fill(row, result)


def measure_http(bench: Bench, target: Target, turn: int) -> Row:
    """S3: wrk against an HTTP server, GET of each object in turn, with the token; one round's share."""
    row = target.row("S3")
    if not row.measured or bench.wrk_note:
        row.note = row.note or bench.wrk_note
        return row
    plan, url = bench.plan, str(target.url)
    script = load.write_wrk_script(bench.workdir / "wrk.lua", bench.ids, bench.token, workload.API_PATH)
    seconds = 1.0 if plan.smoke else plan.round_seconds
    label = f"S3 {target.name}{round_label(plan, turn)}"
    try:
        if plan.warmup_seconds:
            load.run_wrk(url, script, plan.connections, plan.warmup_seconds, Progress(f"{label} warm-up"))
        before = servers.cpu_seconds(target.pid) if target.pid else None
        progress = Progress(label)
        result = load.run_wrk(url, script, plan.connections, seconds, progress)
        after = servers.cpu_seconds(target.pid) if target.pid else None
    except LoadError as exc:
        row.note = f"failed: {exc}"
        return row
    progress.finish()
    calls, elapsed = int(result["requests"]), result["duration_us"] / 1e6
    errors = sum(int(result[key]) for key in ("connect", "read", "write", "status", "timeout"))
    server_cpu = None if before is None or after is None else after - before
    figures = {"calls": calls, "errors": errors, "seconds": elapsed, "rate": calls / elapsed, **result}
    return fill(row, {**figures, "server_cpu_s": server_cpu})


def measure_idle(bench: Bench, target: Target) -> Row:
    """S5: hold ``idle_connections`` authenticated connections; RSS growth of the server per connection."""
    row = target.row("S5")
    if not row.measured:
        return row
    plan, pid = bench.plan, target.pid
    spec = NodeLoad(
        mode="idle",
        url=str(target.url),
        envelopes=bench.envelopes("open"),
        connections=plan.idle_connections,
        in_flight=1,
        calls=plan.idle_connections,
        seconds=0.0,
        server_pid=pid,
        batch=plan.batch,
    )
    before = servers.rss_kib(pid) if pid else None
    held: dict[str, int] = {}

    def while_open(count: int) -> None:
        if pid:
            held["rss"] = servers.rss_kib(pid)

    progress = Progress(f"S5 {target.name}")
    try:
        result = load.run_idle(spec, progress, while_open)
    except LoadError as exc:
        progress.finish("failed")
        row.note = f"failed: {exc}"
        return row
    progress.finish()
    row.connections = int(result["connections"])
    if before is not None and "rss" in held and row.connections:
        row.rss_kib_per_connection = (held["rss"] - before) / row.connections
    return fill(row, result)


def fresh_flowbus(bench: Bench, role: str) -> Target:
    """Restart the bus this run started, so that S5's RSS before is not swollen by earlier scenarios."""
    if bench.bus is None:
        return bench.targets[role]
    server = bench.bus.restart()
    bench.targets.update(flowbus_targets(server.urls["ws"], server.urls["http"], bench.token, server.pid, bench.ids[0]))
    return bench.targets[role]


def round_label(plan: Plan, turn: int) -> str:
    return f" ({turn + 1}/{plan.rounds})" if plan.rounds > 1 else ""


def in_rounds(bench: Bench, roles: Sequence[str], measure: Callable[[Target, int], Row]) -> list[Row]:
    """Measure each role's target once per round, the roles taking turns; a row per role."""
    turns = [[measure(bench.targets[role], turn) for role in roles] for turn in range(bench.plan.rounds)]
    return [report.combine(list(rounds)) for rounds in zip(*turns, strict=True)]


def run_scenario(bench: Bench, scenario: str) -> list[Row]:
    targets = bench.targets
    if scenario in ("S1", "S2"):
        mode, opens = "pipelined" if scenario == "S1" else "fanin", bench.envelopes("open")
        return in_rounds(bench, WS_ROLES, lambda target, turn: measure_load(bench, scenario, target, mode, opens, turn))
    if scenario == "S3":
        return in_rounds(bench, ("fb_http", "aio_http"), lambda target, turn: measure_http(bench, target, turn))
    if scenario == "S4":
        creates = bench.envelopes("create")
        rows = in_rounds(
            bench, ("fb_ws", "sqlite"), lambda target, turn: measure_load(bench, "S4", target, "fanin", creates, turn)
        )
        rows[0].versus = rows[1].server  # writes: FlowBus against bare aiosqlite, not bare websockets
        return rows
    if scenario == "S4pg":
        if targets["fb_pg"].url is None:
            return [targets[role].row("S4pg") for role in ("fb_pg", "asyncpg")]
        creates = bench.envelopes("create")
        return in_rounds(
            bench,
            ("fb_pg", "asyncpg"),
            lambda target, turn: measure_load(bench, "S4pg", target, "fanin", creates, turn),
        )
    if scenario == "S5":
        return [measure_idle(bench, fresh_flowbus(bench, r) if r.startswith("fb_") else targets[r]) for r in WS_ROLES]
    if scenario == "S7":
        return [measure_fanout(bench, targets[role]) for role in ("fb_ws", "broadcast")]
    return measure_s6(bench)


def measure_fanout(bench: Bench, target: Target) -> Row:
    """S7 against one server: events/s delivered to the subscribers, and write-to-event latency."""
    plan = bench.plan
    row = Row("S7", "FlowBus fan-out" if target.role == "fb_ws" else target.name, target.row("S7").kind)
    if target.role == "fb_ws":
        row.versus = "ceiling broadcast"
    progress = Progress(f"S7 {row.server} ({plan.subscribers} subscribers)")
    cpu_before = servers.cpu_seconds(target.pid) if target.pid else None
    result = asyncio.run(fanout.fanout(str(target.url), plan.subscribers, plan.fanout_writes))
    progress.finish(f"{result.delivered} events")
    row.calls, row.errors, row.seconds = result.delivered, result.errors, result.seconds
    row.rate = result.delivered / result.seconds if result.seconds else 0.0
    row.p50_us, row.p99_us = result.p50_us, result.p99_us
    row.client_cpu_us = report.per_call_us(result.client_cpu_s, result.delivered)
    if cpu_before is not None and target.pid:
        row.server_cpu_us = report.per_call_us(servers.cpu_seconds(target.pid) - cpu_before, result.delivered)
    return row


def measure_s6(bench: Bench) -> list[Row]:
    """S6: the flows' writes/s beside the aiosqlite ceiling, in rounds; then the event latency."""
    creates = bench.envelopes("create")
    database = bench.bus.workdir / "data" / "flowbus.db" if bench.bus is not None else None
    before = flows.changes_in(database) if database else None
    counted = [0]

    def measure(target: Target, turn: int) -> Row:
        if target.role == "sqlite":
            return measure_load(bench, "S6", target, "fanin", creates, turn)
        return measure_executions(bench, target, turn, counted)

    rows = in_rounds(bench, ("fb_ws", "sqlite"), measure)
    after = flows.changes_in(database) if database else None
    writes = (after - before) / counted[0] if before is not None and after is not None and counted[0] else None
    rows[0].versus = rows[1].server
    rows[0].writes_per_call = writes if writes is not None else flows.WRITES_PER_EXECUTION
    rows[0].writes_counted = writes is not None
    return [*rows, measure_events(bench, bench.targets["fb_ws"])]


def measure_executions(bench: Bench, target: Target, turn: int, counted: list[int]) -> Row:
    """One round of S6's executions (after a short warm-up on the first round)."""
    row = target.row("S6")
    row.server = "FlowBus flows"
    plan = bench.plan
    url = str(target.url)
    if turn == 0 and plan.warmup_seconds:
        warm = asyncio.run(flows.executions(url, plan.connections, plan.warmup_calls // 10, plan.warmup_seconds))
        counted[0] += warm.executions
    progress = Progress(f"S6 FlowBus flows{round_label(plan, turn)}")
    result = asyncio.run(flows.executions(url, plan.connections, plan.round_calls, plan.round_seconds))
    progress.finish(f"{result.executions} executions")
    counted[0] += result.executions
    if result.first_error:
        print(f"S6 FlowBus flows: {result.errors} errors, the first: {result.first_error}", file=sys.stderr)
    row.calls, row.errors, row.seconds = result.executions, result.errors, result.seconds
    row.rate = result.executions / result.seconds if result.seconds else 0.0
    return row


def measure_events(bench: Bench, target: Target) -> Row:
    """S6's event latency: one event at a time to one of ``waiting`` waiting executions."""
    plan = bench.plan
    waiting = plan.waiting
    row = Row("S6", "FlowBus flow events", FLOWBUS, note=None)
    progress = Progress(f"S6 FlowBus flow events ({waiting} waiting)")
    result = asyncio.run(flows.event_latency(str(target.url), waiting, waiting, plan.connections))
    progress.finish(f"{result.events} events")
    row.calls, row.errors, row.seconds = result.events, result.errors, result.seconds
    row.rate = result.events / result.seconds if result.seconds else 0.0
    row.p50_us, row.p99_us = result.p50_us, result.p99_us
    return row


# -- setting up -------------------------------------------------------------------------------


def prepare_node(smoke: bool) -> None:
    """Make sure the Node client can run: install bench/node_modules with ``npm ci`` if needed (not in smoke)."""
    problem = load.node_ready()
    if problem and not smoke and shutil.which("node") and shutil.which("npm"):
        print("installing the load generator's dependencies: npm ci --prefix bench", file=sys.stderr)
        subprocess.run(["npm", "ci", "--prefix", str(BENCH), "--no-audit", "--no-fund"], check=False)
        problem = load.node_ready()
    if problem:
        raise SystemExit(f"bench/run.py: {problem}")


def prepare_wrk(plan: Plan) -> str | None:
    """None when S3 can run; else the note its rows get. The full run installs wrk, the smoke run never does."""
    if "S3" not in plan.scenarios:
        return None
    if not plan.smoke:
        load.install_wrk()
    return load.wrk_missing()


def connect_flowbus(stack: ExitStack, args: argparse.Namespace, workdir: Path) -> Bench:
    """Start a bus (or take the running one), log in, create the objects; FlowBus's targets."""
    plan = make_plan(args)
    bus: OwnBus | None = None
    if args.ws:
        ws_url, http_url, pid, password = args.ws, args.http, args.pid, args.password
    else:
        password = secrets.token_urlsafe(18)
        bus = OwnBus(workdir / "flowbus", password)
        stack.callback(bus.stop)
        server = bus.start()
        ws_url, http_url, pid = server.urls["ws"], server.urls["http"], server.pid
    token = args.token if args.ws and args.token else asyncio.run(workload.log_in(ws_url, args.user, password))
    objects = asyncio.run(workload.create_objects(workload.with_token(root_path(ws_url), token), plan.objects))
    bench = Bench(plan, workdir, token, objects, bus=bus, postgres=args.postgres)
    bench.targets.update(flowbus_targets(ws_url, http_url, token, pid, bench.ids[0]))
    return bench


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Row]]:
    with tempfile.TemporaryDirectory(prefix="flowbus-bench-") as tmp, ExitStack() as stack:
        bench = connect_flowbus(stack, args, Path(tmp))
        bench.wrk_note = prepare_wrk(bench.plan)
        start_ceilings(stack, bench)
        rows = [row for scenario in bench.plan.scenarios for row in run_scenario(bench, scenario)]
        meta = describe(bench, args)
    return meta, rows


# -- reporting --------------------------------------------------------------------------------


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except Exception:
        return None


def event_loop_name(args: argparse.Namespace) -> str:
    if args.ws:
        return "unknown (a running bus)"
    if os.environ.get("FLOWBUS_EVENT_LOOP", "auto") == "asyncio":
        return "asyncio"
    return "uvloop" if package_version("uvloop") else "asyncio"


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


def describe(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "commit": git_commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bus": args.ws or "started by bench/run.py (authentication on)",
        "python": platform.python_version(),
        "event_loop": event_loop_name(args),
        "websockets": package_version("websockets"),
        "aiohttp": package_version("aiohttp"),
        "aiosqlite": package_version("aiosqlite"),
        "asyncpg": package_version("asyncpg"),
        "orjson": package_version("orjson"),
        "node": load.node_version(),
        "ws": load.ws_package_version(),
        "wrk": load.wrk_version(),
        "cores": os.cpu_count(),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "client": "bench/loadgen.mjs (Node, ws) for websockets; wrk -t1 for HTTP",
        "auth": "a token given once per connection in the handshake URL (?token=); Flow-Auth-Token over HTTP",
        "object_bytes": len(orjson.dumps(bench.objects[0])),
        "parameters": asdict(bench.plan),
    }


def heading(meta: dict[str, Any]) -> str:
    p = meta["parameters"]
    return "\n".join(
        [
            f"FlowBus benchmark, commit {meta['commit']}, {meta['date']}; bus: {meta['bus']}",
            f"Python {meta['python']} ({meta['event_loop']} event loop), websockets {meta['websockets']},"
            f" aiohttp {meta['aiohttp']}, node {meta['node']} + ws {meta['ws']}, {meta['wrk'] or 'no wrk'},"
            f" {meta['cores']} cores",
            f"{p['calls']} calls or {p['seconds']:g} s per row"
            + (f" in {p['rounds']} rounds" if p["rounds"] > 1 else "")
            + (", no warm-up (smoke)" if p["smoke"] else f", each after a warm-up of {p['warmup_calls']} calls or 2 s")
            + f"; S1 {p['in_flight']} in flight; S2-S4 {p['connections']} connections;"
            f" S5 {p['idle_connections']} connections; {p['objects']} objects of {meta['object_bytes']} bytes",
            "srv/gen us/call: CPU time of the server process / of the load generator per call (S5: per connection);"
            " x: FlowBus / its ceiling",
        ]
    )


def json_path(value: str | None) -> Path:
    if value:
        return Path(value)
    return RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_node(args.smoke)
    servers.raise_open_files_limit()
    started = time.monotonic()
    try:
        meta, rows = run(args)
    except (RuntimeError, OSError) as exc:  # a bus that would not start, a login or CREATE refused
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 1
    meta["run_seconds"] = round(time.monotonic() - started, 1)
    print(f"{heading(meta)}\n\n{report.table(rows)}\n\n{report.summary(rows)}\n\n{report.target_lines(rows)}")
    path = json_path(args.json)
    report.write_json(path, meta, rows)
    print(f"\nJSON: {path}")
    failed = [r for r in rows if r.errors or (r.note or "").startswith("failed")]
    if failed:
        print(f"{len(failed)} rows had errors or failed: their figures are not comparable", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
