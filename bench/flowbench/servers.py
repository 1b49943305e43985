"""Server processes: start one, wait for its ready line, read its CPU time and memory, stop it."""

from __future__ import annotations

import os
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 30.0
FLOWBUS_READY = re.compile(r"FlowBus ready ws=(?P<ws>\S+) http=(?P<http>\S+)")
CEILING_READY = re.compile(r"ceiling ready ws=(?P<ws>\S+)(?: http=(?P<http>\S+))?")


@dataclass
class Server:
    """A server subprocess that printed its ready line (``urls`` holds the line's named groups)."""

    name: str
    process: subprocess.Popen[str]
    urls: dict[str, str]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is field 3
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """The resident set size of a process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server: this one, less asyncio's debug mode (it would measure asyncio's checks)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


@contextmanager
def running(
    name: str, command: list[str], ready: re.Pattern[str], workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start ``command`` in ``workdir``, wait for a stdout line matching ``ready``, stop it afterwards.

    The server's stderr (its log) goes to ``workdir/server.log``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=child_env(extra_env), stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        urls = _wait_ready(name, process, ready, log_path)
        yield Server(name, process, urls, log_path)
    finally:
        stop(process)


def _wait_ready(name: str, process: subprocess.Popen[str], ready: re.Pattern[str], log_path: Path) -> dict[str, str]:
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
            return {key: value for key, value in match.groupdict().items() if value}
    raise RuntimeError(f"{name} did not print its ready line in {READY_TIMEOUT:.0f} s")


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    """Hand stdout on line by line (and keep draining it); an empty string means end of output."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put("")


def stop(process: subprocess.Popen[str]) -> None:
    """SIGINT, then up to 30 s to exit, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def flowbus_command(data: Path) -> list[str]:
    return [sys.executable, "-m", "flowbus", "serve", "--ws-port", "0", "--http-port", "0", "--data", str(data)]


def ceiling_command(script: str, argument: Path) -> list[str]:
    return [sys.executable, str(BENCH / script), str(argument)]
