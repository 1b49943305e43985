"""The benchmark must not rot: ``bench/run.py --smoke`` runs every scenario and writes its report.

No timing is asserted: the figures of a few hundred calls on a shared machine mean little.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.flowbench import report
from bench.flowbench.report import CEILING, FLOWBUS, Row, comparisons

ROOT = Path(__file__).resolve().parents[2]
WRK_SKIPPED = "skipped: wrk is not installed"


@dataclass(frozen=True)
class Smoke:
    stdout: str
    rows: list[dict[str, Any]]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    path = tmp_path_factory.mktemp("bench") / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--json", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.exists(), done.stdout
    return Smoke(done.stdout, orjson.loads(path.read_bytes())["rows"])


def rows_of(smoke: Smoke, scenario: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in smoke.rows if r["scenario"] == scenario and r["kind"] == kind]


@pytest.mark.parametrize("scenario", ["S1", "S2", "S4", "S5"])
def test_flowbus_and_its_ceiling_are_measured(smoke: Smoke, scenario: str) -> None:
    flowbus = next(r for r in rows_of(smoke, scenario, FLOWBUS) if r["server"] == "FlowBus ws")
    ceilings = [r for r in rows_of(smoke, scenario, CEILING) if r["note"] is None]
    for row in [flowbus, *ceilings]:
        assert row["note"] is None, row
        assert row["calls"] > 0 and row["errors"] == 0, row
        line = rf"^{scenario}\s+{re.escape(row['server'])}\s+{row['calls']}\s+0\s"
        assert re.search(line, smoke.stdout, re.MULTILINE), smoke.stdout
    assert ceilings, f"no ceiling row for {scenario}"
    if scenario == "S5":
        assert flowbus["connections"] == 200


def test_the_gateway_websocket_is_measured_or_not_available(smoke: Smoke) -> None:
    for row in (r for r in smoke.rows if r["server"] == "FlowBus gateway /ws"):
        assert row["note"] is None and row["errors"] == 0 or row["note"].startswith("not available"), row


def test_http_is_measured_or_skipped_for_want_of_wrk(smoke: Smoke) -> None:
    rows = [r for r in smoke.rows if r["scenario"] == "S3"]
    assert len(rows) == 2
    if any(r["note"] for r in rows):
        assert all(r["note"].startswith(WRK_SKIPPED) for r in rows), rows
        assert WRK_SKIPPED in smoke.stdout
    else:
        assert all(r["calls"] > 0 and r["errors"] == 0 for r in rows), rows


def test_flows_are_measured(smoke: Smoke) -> None:
    """S6: executions with their commits counted in the change log, the ceiling, and event latency."""
    rows = {r["server"]: r for r in smoke.rows if r["scenario"] == "S6"}
    assert set(rows) == {"FlowBus flows", "ceiling aiosqlite", "FlowBus flow events"}
    flows, events = rows["FlowBus flows"], rows["FlowBus flow events"]
    assert flows["calls"] > 0 and flows["errors"] == 0 and flows["writes_counted"] is True
    assert flows["writes_per_call"] >= 5  # the execution, the device and three transitions, at least
    assert events["calls"] > 0 and events["errors"] == 0 and events["p99_us"] >= events["p50_us"] > 0
    assert re.search(r"^S6 FlowBus flows: \d+ executions/s x [\d.]+ commits each", smoke.stdout, re.MULTILINE)
    assert re.search(r"^S6 event to transition: p50 [\d.]+ ms, p99 [\d.]+ ms", smoke.stdout, re.MULTILINE)


# -- the table, without running anything ------------------------------------------------------


def sample_rows() -> list[Row]:
    return [
        Row("S1", "FlowBus ws", FLOWBUS, "ceiling websockets", 1000, 0, 1.0, 4000.0, 1500.0, 3000.0, 200.0, 10.0),
        Row("S1", "ceiling websockets", CEILING, None, 1000, 0, 1.0, 16000.0, 500.0, 900.0, 50.0, 9.5),
        Row("S1", "FlowBus gateway /ws", FLOWBUS, "ceiling aiohttp ws", note="not available: HTTP 404"),
        Row("S4", "FlowBus ws", FLOWBUS, "ceiling aiosqlite", 500, 0, 1.0, 1000.0, 900.0, 2000.0, 400.0, 20.0),
        Row("S4", "ceiling aiosqlite", CEILING, None, 500, 0, 1.0, 2500.0, 900.0, 2000.0, 300.0, 20.0),
    ]


def test_the_table_shows_ratios_against_the_ceiling_and_notes() -> None:
    lines = report.table(sample_rows()).splitlines()
    assert lines[0].split()[:3] == ["scen", "server", "calls"]
    figures = "1000 0 1.00 4000 1.50 3.00 200 10.0 - 0.25 4.00x".split()
    assert lines[1].split() == ["S1", "FlowBus", "ws", *figures]
    assert lines[2].split()[-2:] == ["-", "-"], "a ceiling row has no ratio"
    assert re.match(r"^S1\s+FlowBus gateway /ws\s+not available: HTTP 404$", lines[3])
    assert lines[4].split()[-2:] == ["0.40", "1.33x"], "S4 against its ceiling"
    assert lines[5].split()[-2:] == ["-", "-"], "a ceiling row has no ratio"


def test_the_summary_gives_the_ratios_in_words() -> None:
    text = report.summary(sample_rows())
    assert "S1 FlowBus ws / ceiling websockets: 0.25 of the calls/s, 4.00x the server CPU per call" in text
    assert "S4 FlowBus writes: 0.25 of FlowBus's S1 (pipelined OPEN) calls/s" in text


def test_targets_are_checked_against_the_run_and_unmeasured_ones_said() -> None:
    """S1 of the sample: 4000 calls/s against the websockets ceiling's 16000 is 0.25 (< 0.75), at 200 us/call
    (> 60); S4 at 1000 calls/s is 0.4 of the bare aiosqlite writer's 2500 (< 0.5); what the sample lacks
    is not measured."""
    verdicts = {t.name: (t.value, t.met) for t in report.targets(sample_rows())}
    assert verdicts["S1 FlowBus ws: calls/s / ceiling websockets"] == (0.25, False)
    assert verdicts["S1 FlowBus ws: server us/call"] == (200.0, False)
    assert verdicts["S4 FlowBus ws: calls/s / ceiling aiosqlite"] == (0.4, False)
    assert verdicts["S1 FlowBus gateway /ws: calls/s / ceiling websockets"] == (None, None)
    lines = report.target_lines(sample_rows())
    assert "S1 FlowBus ws: calls/s / ceiling websockets >= 0.75: 0.25  NOT met" in lines
    assert "S5 FlowBus ws: KiB per idle connection <= 40: -  not measured" in lines


def test_rounds_combine_into_one_row_and_ratios_per_round() -> None:
    """Two rounds of 1000 calls: 1 s at 1000 us/call, then 3 s at 2000 us/call."""
    flowbus = [
        Row("S2", "FlowBus ws", FLOWBUS, "ceiling websockets", 1000, 0, 1.0, 1000.0, 100.0, 300.0, 1000.0, 5.0),
        Row("S2", "FlowBus ws", FLOWBUS, "ceiling websockets", 1000, 1, 3.0, 333.3, 200.0, 900.0, 2000.0, 7.0),
    ]
    ceiling = [
        Row("S2", "ceiling websockets", CEILING, None, 1000, 0, 0.5, 2000.0, 50.0, 100.0, 500.0, 5.0),
        Row("S2", "ceiling websockets", CEILING, None, 1000, 0, 1.0, 1000.0, 80.0, 200.0, 800.0, 6.0),
    ]
    rows = [report.combine(flowbus), report.combine(ceiling)]
    assert (rows[0].calls, rows[0].errors, rows[0].seconds, rows[0].rate) == (2000, 1, 4.0, 500.0)
    assert (rows[0].server_cpu_us, rows[0].client_cpu_us) == (1500.0, 6.0)
    assert (rows[0].p50_us, rows[0].p99_us) == (150.0, 600.0), "the median of the rounds' latencies"
    (compared,) = comparisons(rows)
    assert compared.rate == pytest.approx(500 / 1333.33, rel=1e-3)
    assert compared.round_rates == pytest.approx([0.5, 0.3333])
    assert "0.38 of the calls/s (rounds: 0.50, 0.33)" in report.summary(rows)


def test_a_failed_round_fails_the_row() -> None:
    measured = Row("S1", "FlowBus ws", FLOWBUS, "ceiling websockets", 1000, 0, 1.0, 1000.0)
    failed = Row("S1", "FlowBus ws", FLOWBUS, "ceiling websockets", note="failed: the bus went away")
    assert report.combine([measured, failed]).note == "failed: the bus went away"
    assert report.combine([measured]) is measured


def test_targets_met() -> None:
    rows = [
        Row("S5", "FlowBus ws", FLOWBUS, "ceiling websockets", 200, 0, 1.0, 100.0, rss_kib_per_connection=16.0),
        Row("S5", "ceiling websockets", CEILING, None, 200, 0, 1.0, 100.0, rss_kib_per_connection=14.0),
    ]
    (s5,) = [t for t in report.targets(rows) if t.name == "S5 FlowBus ws: KiB per idle connection"]
    assert s5.met is True


def test_fanout_is_measured_beside_its_ceiling(smoke: Smoke) -> None:
    """S7: every subscriber got every write's event, from FlowBus and from the broadcast ceiling."""
    rows = {r["server"]: r for r in smoke.rows if r["scenario"] == "S7"}
    assert set(rows) == {"FlowBus fan-out", "ceiling broadcast"}
    for row in rows.values():
        assert row["errors"] == 0 and row["calls"] == 50 * 20, row  # smoke: 50 subscribers, 20 writes
        assert row["p99_us"] >= row["p50_us"] > 0
    assert rows["FlowBus fan-out"]["versus"] == "ceiling broadcast"
