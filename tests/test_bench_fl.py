"""The FL benchmark stays runnable: ``bench_fl.py --quick`` runs each of the simulator's contenders
as its own process and prints the ratio table (pfl-research and Flower need their own virtualenvs
and are left to the full run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_runs_every_simulator_contender():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_fl.py"), "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for contender in ("plain", "sequential 1x", "vectorized 1x", "sequential 2x1", "vectorized 2x1"):
        assert re.search(rf"\[1/1\] {re.escape(contender)}\s+loop\s+\d+\.\d+ s\s+process\s+\d+\.\d+ s", out), out
    rows = re.findall(r"^  (sequential|vectorized), (1|2) ranks?\s+(\d+\.\d+) \[\s*(\d+\.\d+)\]$", out, re.M)
    assert len(rows) == 4 and all(float(loop) > 0 and float(process) > 0 for *_, loop, process in rows), out
    assert "pfl-research" not in out.split("ratios")[1]  # --quick leaves the other frameworks out
