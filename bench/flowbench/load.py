"""The load generators: the Node websocket client (bench/loadgen.mjs) and wrk, run as subprocesses."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from flowbench.servers import BENCH, CLOCK_TICKS, child_env

LOADGEN = BENCH / "loadgen.mjs"
NODE_MODULES = BENCH / "node_modules"
BAR_WIDTH = 20


class LoadError(RuntimeError):
    """A load generator failed (could not connect, the server closed, calls went unanswered)."""


# -- the progress bar -------------------------------------------------------------------------


class Progress:
    """``S1 FlowBus ws  [#####.....] 12000/20000`` on stderr: redrawn in place on a terminal,
    one final line otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.line = ""

    def update(self, done: int, total: int, elapsed: float = 0.0, seconds: float = 0.0, unit: str = "") -> None:
        fraction = max(done / total if total else 0.0, elapsed / seconds if seconds else 0.0)
        filled = round(BAR_WIDTH * min(fraction, 1.0))
        self.line = f"{self.label:<28} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}{unit}"
        if self.live:
            self.stream.write(f"\r{self.line}\x1b[K")
            self.stream.flush()

    def finish(self, note: str = "") -> None:
        """End the bar's line (with ``note``, e.g. "failed")."""
        end = f"{self.line or self.label}  {note}".rstrip()
        self.stream.write(f"\r{end}\x1b[K\n" if self.live else f"{end}\n")
        self.stream.flush()


# -- the Node client --------------------------------------------------------------------------


def node_ready() -> str | None:
    """None when the Node client can run, else what is missing."""
    if shutil.which("node") is None:
        return "node is not on PATH (the load generator is a Node program; install Node.js 18 or later)"
    if not (NODE_MODULES / "ws").is_dir():
        return "bench/node_modules is missing: run `npm ci --prefix bench` (make bench does it)"
    return None


def node_version() -> str | None:
    try:
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def ws_package_version() -> str | None:
    try:
        return str(orjson.loads((NODE_MODULES / "ws" / "package.json").read_bytes())["version"])
    except (OSError, KeyError, orjson.JSONDecodeError):
        return None


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """One run of bench/loadgen.mjs."""

    mode: str
    url: str
    envelopes: Path
    connections: int
    in_flight: int
    calls: int
    seconds: float
    warmup_calls: int = 0
    warmup_seconds: float = 0.0
    server_pid: int | None = None
    batch: int = 100

    def argv(self) -> list[str]:
        args = {
            "mode": self.mode,
            "url": self.url,
            "envelopes": self.envelopes,
            "connections": self.connections,
            "in-flight": self.in_flight,
            "calls": self.calls,
            "seconds": self.seconds,
            "warmup-calls": self.warmup_calls,
            "warmup-seconds": self.warmup_seconds,
            "clk-tck": CLOCK_TICKS,
            "batch": self.batch,
        }
        if self.server_pid is not None:
            args["server-pid"] = self.server_pid
        return ["node", str(LOADGEN), *(part for key, value in args.items() for part in (f"--{key}", str(value)))]


def run_node(load: NodeLoad, progress: Progress) -> dict[str, Any]:
    """Run a pipelined or fan-in load; return the client's result line."""
    process = _start_node(load, progress, stdin=False)
    out, _ = process.communicate()
    result = _result(process, out.splitlines()[-1] if out else "")
    progress.update(int(result["calls"]), load.calls)
    return result


def run_idle(load: NodeLoad, progress: Progress, while_open: Callable[[int], None]) -> dict[str, Any]:
    """Open the idle connections, call ``while_open(count)`` while they are all open, then close them."""
    process = _start_node(load, progress, stdin=True)
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    if line.startswith("ready "):
        while_open(int(line.split()[1]))
    process.stdin.close()
    rest = process.stdout.read()
    process.wait()
    result = _result(process, (rest.splitlines() or [line])[-1])
    progress.update(int(result["connections"]), load.connections)
    return result


def _start_node(load: NodeLoad, progress: Progress, *, stdin: bool) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        load.argv(),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    threading.Thread(target=_follow, args=(process, progress), daemon=True).start()
    return process


def _follow(process: subprocess.Popen[str], progress: Progress) -> None:
    """Turn the client's ``progress PHASE DONE TOTAL ELAPSED SECONDS`` lines into the bar."""
    assert process.stderr is not None
    for line in process.stderr:
        parts = line.split()
        if len(parts) == 6 and parts[0] == "progress":
            phase, done, total, elapsed, seconds = parts[1:]
            unit = " (warm-up)" if phase == "warmup" else ""
            progress.update(int(done), int(total), float(elapsed), float(seconds), unit)
        elif line.strip():
            sys.stderr.write(f"loadgen: {line}")


def _result(process: subprocess.Popen[str], line: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise LoadError(f"the load generator exited {process.returncode} without a result: {line!r}") from None
    if "error" in result:
        raise LoadError(str(result["error"]))
    if process.returncode != 0:
        raise LoadError(f"the load generator exited {process.returncode}")
    return result


# -- wrk --------------------------------------------------------------------------------------

WRK_SCRIPT = """\
-- Written by bench/run.py: GET each object in turn with the token; print the figures as JSON.
local ids = {%(ids)s}
local token = "%(token)s"
local requests = {}
local count = 0

init = function(args)
  for i, id in ipairs(ids) do
    requests[i] = wrk.format("GET", "%(path)s" .. id, {["Flow-Auth-Token"] = token})
  end
end

request = function()
  count = count + 1
  return requests[(count - 1) %% #requests + 1]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def write_wrk_script(path: Path, ids: Sequence[str], token: str | None, api_path: str) -> Path:
    quoted = ", ".join(f'"{oid}"' for oid in ids)
    path.write_text(WRK_SCRIPT % {"ids": quoted, "token": token or "", "path": api_path})
    return path


def wrk_missing() -> str | None:
    """None when wrk is on PATH, else how to get it."""
    if shutil.which("wrk"):
        return None
    return "skipped: wrk is not installed (Debian/Ubuntu: `apt-get install -y wrk`; `make bench` installs it as root)"


def install_wrk() -> bool:
    """Install wrk with apt-get when running as root on a machine that has it; True if wrk is there after."""
    if shutil.which("wrk"):
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    print("installing wrk: apt-get install -y wrk", file=sys.stderr)
    if not _apt_get("install", "-y", "wrk"):
        _apt_get("update")  # the package lists may be missing or stale
        _apt_get("install", "-y", "wrk")
    return shutil.which("wrk") is not None


def _apt_get(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], stdout=subprocess.DEVNULL, env=env).returncode == 0


def wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" [")[0] if first else None


def run_wrk(url: str, script: Path, connections: int, seconds: float, progress: Progress) -> dict[str, Any]:
    """Run ``wrk -t1 -c<connections> -d<seconds>s``; its figures plus its own CPU time (``client_cpu_s``)."""
    duration = max(1, round(seconds))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while True:
        try:
            out, err = process.communicate(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - started
            progress.update(round(min(elapsed, duration)), duration, elapsed, duration, " s")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    progress.update(duration, duration, unit=" s")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise LoadError(f"wrk exited {process.returncode}: {(err or out).strip()[-500:]}")
    result: dict[str, Any] = orjson.loads(lines[-1])
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result
