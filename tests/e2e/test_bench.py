"""The benchmark must not rot: ``bench/bench_ws.py --smoke`` runs and prints its table.

No timing is asserted: the figures of a few hundred calls on a shared machine mean little.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = r"^{name}\s+(\d+)\s+0\s+[\d.]+\s+\d+\s+[\d.]+\s+[\d.]+\s+\d+\s+\d+$"


def test_smoke_run_prints_both_rows_and_a_ratio() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_ws.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("FlowBus", "ceiling"):
        match = re.search(ROW.format(name=name), done.stdout, re.MULTILINE)
        assert match, f"no {name} row in:\n{done.stdout}"
        assert int(match[1]) > 0
    assert re.search(r"^ratio FlowBus/ceiling: \d+\.\d+ of the calls/s", done.stdout, re.MULTILINE), done.stdout
