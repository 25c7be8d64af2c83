"""Polling for tests that watch real jobs (Slurm, subprocesses) make progress."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Return once ``predicate()`` is true; fail naming ``what`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class BackgroundCommand:
    """``python -m gptfl_hpc ARGS`` started at once and waited for when its result is first needed,
    so it runs alongside the test that compares against it. Its output goes to ``log``, a file, not
    a pipe: nothing blocks it until it is read."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gptfl_hpc", *args], cwd=REPO, stdout=out,
                                         stderr=subprocess.STDOUT)

    def wait(self, timeout_s: float = 600) -> None:
        assert self.proc.wait(timeout=timeout_s) == 0, self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
