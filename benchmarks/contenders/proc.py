"""Process bookkeeping shared by the contender scripts (Linux): start time and leftover children."""

from __future__ import annotations

import ctypes
import os
import signal
import time

_PR_SET_CHILD_SUBREAPER = 36


def process_start() -> float:
    """Wall-clock time this process started, so that set-up time includes interpreter start-up."""
    with open("/proc/self/stat") as stat:
        start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - age


def become_subreaper() -> None:
    """Adopt orphaned descendants (Ray's workers outlive its raylet briefly) so they can be awaited."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_children(timeout: float = 15.0) -> list[int]:
    """Wait until this process has no children left; SIGKILL those still there after ``timeout``.

    Returns the pids that had to be killed.
    """
    deadline, killed = time.monotonic() + timeout, []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return killed
        if pid:
            continue
        if time.monotonic() > deadline and not killed:
            killed = _children()
            for child in killed:
                os.kill(child, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        elif time.monotonic() > deadline:
            return killed  # unkillable (e.g. stuck in the kernel): give up rather than hang
        time.sleep(0.02)


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found
