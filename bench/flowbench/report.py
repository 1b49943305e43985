"""The benchmark's rows, their ratios, the table and the JSON report (no I/O but writing the file)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

FLOWBUS = "flowbus"
CEILING = "ceiling"


@dataclass(slots=True)
class Row:
    """One line of the table: a server (FlowBus or a ceiling) under one scenario.

    ``note`` is set instead of the figures when the row was not measured (not available,
    skipped, failed). A FlowBus row names the ceiling row it is compared with in ``versus``.
    A row measured in rounds (see :func:`combine`) keeps each round's calls/s in ``round_rates``.
    """

    scenario: str
    server: str
    kind: str
    versus: str | None = None
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50_us: float | None = None
    p99_us: float | None = None
    server_cpu_us: float | None = None
    client_cpu_us: float | None = None
    connections: int | None = None
    rss_kib_per_connection: float | None = None
    note: str | None = None
    round_rates: list[float] = field(default_factory=list)
    writes_per_call: float | None = None
    """S6: the commits one execution makes; its writes/s are ``rate * writes_per_call``."""
    writes_counted: bool = False
    """Whether ``writes_per_call`` was counted in the bus's change log (else: the flow's shape)."""

    @property
    def writes_rate(self) -> float:
        """What the ceiling of a write scenario is compared with: calls/s, or writes/s for S6."""
        return self.rate * self.writes_per_call if self.writes_per_call is not None else self.rate

    @property
    def measured(self) -> bool:
        return self.note is None


def per_call_us(cpu_seconds: float | None, calls: int) -> float | None:
    if cpu_seconds is None or calls <= 0:
        return None
    return cpu_seconds * 1e6 / calls


def combine(rounds: list[Row]) -> Row:
    """One row of a server measured in rounds: calls, errors and seconds summed; calls/s and
    the CPU per call over all of them; the median round's latencies.

    A round that was not measured (failed) makes the whole row so: its note is the row's.
    """
    first = rounds[0]
    unmeasured = next((r for r in rounds if not r.measured), None)
    if unmeasured is not None or len(rounds) == 1:
        return unmeasured or first
    calls = sum(r.calls for r in rounds)
    seconds = sum(r.seconds for r in rounds)
    return Row(
        first.scenario,
        first.server,
        first.kind,
        first.versus,
        calls,
        sum(r.errors for r in rounds),
        seconds,
        calls / seconds if seconds else 0.0,
        _median(r.p50_us for r in rounds),
        _median(r.p99_us for r in rounds),
        _weighted(rounds, "server_cpu_us"),
        _weighted(rounds, "client_cpu_us"),
        round_rates=[r.rate for r in rounds],
    )


def _median(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _weighted(rounds: list[Row], name: str) -> float | None:
    """A per-call figure over every round (each round weighs by its calls); None unless all have it."""
    values = [getattr(r, name) for r in rounds]
    calls = sum(r.calls for r in rounds)
    if any(v is None for v in values) or not calls:
        return None
    weighted: float = sum(v * r.calls for v, r in zip(values, rounds, strict=True))
    return weighted / calls


def ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0 or math.isnan(top) or math.isnan(bottom):
        return None
    return top / bottom


@dataclass(frozen=True, slots=True)
class Comparison:
    """A FlowBus row against its ceiling row."""

    scenario: str
    server: str
    versus: str
    rate: float | None
    server_cpu: float | None
    rss: float | None
    round_rates: list[float] = field(default_factory=list)
    """The calls/s ratio of each round (FlowBus and its ceiling take turns in a round)."""


def find(rows: list[Row], scenario: str, server: str) -> Row | None:
    return next((r for r in rows if r.scenario == scenario and r.server == server and r.measured), None)


def comparisons(rows: list[Row]) -> list[Comparison]:
    out = []
    for row in rows:
        other = find(rows, row.scenario, row.versus) if row.versus and row.measured else None
        if other is None:
            continue
        out.append(
            Comparison(
                row.scenario,
                row.server,
                other.server,
                ratio(row.writes_rate, other.rate),
                ratio(row.server_cpu_us, other.server_cpu_us),
                ratio(row.rss_kib_per_connection, other.rss_kib_per_connection),
                _round_ratios(row, other),
            )
        )
    return out


def _round_ratios(row: Row, other: Row) -> list[float]:
    if len(row.round_rates) != len(other.round_rates):
        return []
    writes = row.writes_per_call or 1.0
    return [top * writes / bottom for top, bottom in zip(row.round_rates, other.round_rates, strict=True) if bottom]


def writes_versus_reads(rows: list[Row]) -> float | None:
    """FlowBus's S4 (CREATE) calls/s as a fraction of its S1 (OPEN, pipelined) calls/s."""
    s1 = next((r for r in rows if r.scenario == "S1" and r.kind == FLOWBUS and r.measured), None)
    s4 = next((r for r in rows if r.scenario == "S4" and r.kind == FLOWBUS and r.measured), None)
    return ratio(s4.rate if s4 else None, s1.rate if s1 else None)


# -- the table --------------------------------------------------------------------------------

COLUMNS = [
    ("scen", 4, "<"),
    ("server", 20, "<"),
    ("calls", 7, ">"),
    ("errors", 6, ">"),
    ("s", 6, ">"),
    ("calls/s", 8, ">"),
    ("p50 ms", 8, ">"),
    ("p99 ms", 8, ">"),
    ("srv us/call", 11, ">"),
    ("gen us/call", 11, ">"),
    ("KiB/conn", 8, ">"),
    ("x calls/s", 9, ">"),
    ("x CPU", 6, ">"),
]


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def times(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def cells(row: Row, compared: Comparison | None) -> list[str]:
    return [
        row.scenario,
        row.server,
        str(row.calls),
        str(row.errors),
        f"{row.seconds:.2f}",
        number(row.rate),
        number(None if row.p50_us is None else row.p50_us / 1000, 2),
        number(None if row.p99_us is None else row.p99_us / 1000, 2),
        number(row.server_cpu_us),
        number(row.client_cpu_us, 1),
        number(row.rss_kib_per_connection, 1),
        times(compared.rate if compared else None),
        times(compared.server_cpu if compared else None, "x"),
    ]


def line(values: list[str]) -> str:
    return " ".join(f"{value:{align}{width}}" for value, (_, width, align) in zip(values, COLUMNS, strict=True))


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table; a row that was not measured shows its note instead."""
    compared = {(c.scenario, c.server): c for c in comparisons(rows)}
    out = [line([name for name, _, _ in COLUMNS])]
    for row in rows:
        if row.measured:
            out.append(line(cells(row, compared.get((row.scenario, row.server)))))
        else:
            out.append(f"{row.scenario:<4} {row.server:<20} {row.note}")
    return "\n".join(out)


def summary(rows: list[Row]) -> str:
    """The ratios in words, one line per FlowBus row that has a measured ceiling."""
    out = []
    for c in comparisons(rows):
        rate = f"{times(c.rate)} of the calls/s"
        if len(c.round_rates) > 1:
            rate += f" (rounds: {', '.join(f'{r:.2f}' for r in c.round_rates)})"
        parts = [rate, f"{times(c.server_cpu, 'x')} the server CPU per call"]
        if c.rss is not None:
            parts.append(f"{times(c.rss, 'x')} the RSS per connection")
        out.append(f"{c.scenario} {c.server} / {c.versus}: " + ", ".join(parts))
    s4 = writes_versus_reads(rows)
    if s4 is not None:
        out.append(f"S4 FlowBus writes: {s4:.2f} of FlowBus's S1 (pipelined OPEN) calls/s")
    out.extend(_flow_lines(rows))
    return "\n".join(out)


def _flow_lines(rows: list[Row]) -> list[str]:
    out = []
    flows = find(rows, "S6", "FlowBus flows")
    if flows is not None and flows.writes_per_call is not None:
        how = "counted in the change log" if flows.writes_counted else "by the flow's shape"
        out.append(
            f"S6 FlowBus flows: {flows.rate:.0f} executions/s x {flows.writes_per_call:.2f} commits each ({how})"
            f" = {flows.writes_rate:.0f} writes/s"
        )
    events = find(rows, "S6", "FlowBus flow events")
    if events is not None and events.p99_us is not None and events.p50_us is not None:
        out.append(
            f"S6 event to transition: p50 {events.p50_us / 1000:.2f} ms, p99 {events.p99_us / 1000:.2f} ms"
            f" ({events.calls} events, one at a time, to executions among those waiting)"
        )
    return out


# -- the targets ------------------------------------------------------------------------------

WS_CEILING = "ceiling websockets"
FLOWBUS_SOCKETS = ("FlowBus ws", "FlowBus gateway /ws")


@dataclass(frozen=True, slots=True)
class Target:
    """One speed target of FlowBus, checked against the figures of one run."""

    name: str
    value: float | None
    limit: float
    at_least: bool

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit


def _field(rows: list[Row], scenario: str, server: str, name: str) -> float | None:
    row = find(rows, scenario, server)
    value = getattr(row, name) if row is not None else None
    return float(value) if value is not None else None


def targets(rows: list[Row]) -> list[Target]:
    """FlowBus's targets: S1/S2 against the bare websockets ceiling (both websocket entries), S3
    against the bare aiohttp handler, S4 against the bare aiosqlite writer, S4pg against bare asyncpg, S5 in KiB
    per connection."""
    out = []
    for scenario in ("S1", "S2"):
        for server in FLOWBUS_SOCKETS:
            rate = ratio(_field(rows, scenario, server, "rate"), _field(rows, scenario, WS_CEILING, "rate"))
            # the gateway's /ws is held to more than the bare websockets library: it is aiohttp's own
            bar = 1.0 if "/ws" in server else 0.75
            out.append(Target(f"{scenario} {server}: calls/s / {WS_CEILING}", rate, bar, True))
            cpu = _field(rows, scenario, server, "server_cpu_us")
            out.append(Target(f"{scenario} {server}: server us/call", cpu, 60, False))
    for server in FLOWBUS_SOCKETS:
        p99 = ratio(_field(rows, "S2", server, "p99_us"), _field(rows, "S2", WS_CEILING, "p99_us"))
        out.append(Target(f"S2 {server}: p99 / {WS_CEILING} p99", p99, 1.5, False))
    http = ratio(_field(rows, "S3", "FlowBus gateway HTTP", "rate"), _field(rows, "S3", "ceiling aiohttp HTTP", "rate"))
    out.append(Target("S3 FlowBus gateway HTTP: calls/s / ceiling aiohttp HTTP", http, 0.7, True))
    sqlite = ratio(_field(rows, "S4", "FlowBus ws", "rate"), _field(rows, "S4", "ceiling aiosqlite", "rate"))
    out.append(Target("S4 FlowBus ws: calls/s / ceiling aiosqlite", sqlite, 0.5, True))
    pg = ratio(_field(rows, "S4pg", "FlowBus ws (pg)", "rate"), _field(rows, "S4pg", "ceiling asyncpg", "rate"))
    out.append(Target("S4pg FlowBus ws (pg): calls/s / ceiling asyncpg", pg, 0.5, True))
    flows = find(rows, "S6", "FlowBus flows")
    writes = ratio(flows.writes_rate if flows else None, _field(rows, "S6", "ceiling aiosqlite", "rate"))
    out.append(Target("S6 FlowBus flows: executions/s x commits / ceiling aiosqlite", writes, 0.5, True))
    for server in FLOWBUS_SOCKETS:
        kib = _field(rows, "S5", server, "rss_kib_per_connection")
        out.append(Target(f"S5 {server}: KiB per idle connection", kib, 40, False))
    return out


def target_lines(rows: list[Row]) -> str:
    """Each target with this run's figure and whether it was met."""
    out = ["targets:"]
    for t in targets(rows):
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t.met]
        sign = ">=" if t.at_least else "<="
        out.append(f"  {t.name} {sign} {t.limit:g}: {number(t.value, 2)}  {verdict}")
    return "\n".join(out)


def report(meta: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    return {
        **meta,
        "rows": [asdict(r) for r in rows],
        "ratios": [asdict(c) for c in comparisons(rows)],
        "s4_over_s1": writes_versus_reads(rows),
        "targets": [{**asdict(t), "met": t.met} for t in targets(rows)],
    }


def write_json(path: Path, meta: dict[str, Any], rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report(meta, rows), option=orjson.OPT_INDENT_2) + b"\n")
