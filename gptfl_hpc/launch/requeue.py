"""USR2 -> safe point -> requeue only this task.

Slurm sends USR2 ``signal_delay_s`` before a job's time limit or at preemption. The handler only
raises the cooperative flag; the stage saves at its next safe point and raises ``Preempted``. If no
safe point comes within the grace period, a watchdog requeues anyway: every stage's on-disk state
is crash-safe, so a hard stop only costs the work since the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Callable, TypeVar

from gptfl_hpc import preemption
from gptfl_hpc.locks import slurm_task_id

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Exit status of a process that handed itself back to Slurm; never reported as a result.
REQUEUED_EXIT = 75


def requeue_self() -> str:
    """Requeue this task alone (never the whole array) and return its id."""
    task = slurm_task_id()
    if task is None:
        raise RuntimeError("not inside a Slurm job; nothing to requeue")
    subprocess.run(["scontrol", "requeue", task], check=True, timeout=60)
    log.warning("requeued Slurm task %s", task)
    return task


def _global_rank() -> int:
    return int(os.environ.get("SLURM_PROCID", os.environ.get("RANK", "0")))


def _restarts() -> int:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0"))


def leave_for_requeue(max_requeues: int) -> None:
    """Hand the task back to Slurm (rank 0 only: requeueing kills every rank) and exit."""
    if slurm_task_id() is None:
        raise RuntimeError("preempted outside Slurm; run the same command again to resume")
    if _restarts() >= max_requeues:
        raise RuntimeError(
            f"preempted after {_restarts()} requeues; raise launcher.slurm.max_requeues to allow more"
        )
    if _global_rank() == 0:
        requeue_self()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(REQUEUED_EXIT)  # no result file: the submitter keeps waiting for the requeued run


def run_preemptible(fn: Callable[[], T], *, grace_s: float, max_requeues: int) -> T:
    """Run ``fn`` with USR2 mapped to a cooperative checkpoint and a requeue of this task."""

    def watchdog() -> None:
        if not finished.wait(grace_s):
            log.error("no safe point within %.0f s of USR2; requeueing from the last checkpoint", grace_s)
            try:
                leave_for_requeue(max_requeues)
            except Exception as exc:  # a thread cannot raise into the job: report and stop it
                log.error("%s", exc)
                os._exit(1)

    def on_usr2(signum: int, frame: object) -> None:
        if preemption.requested():
            return
        log.warning("caught USR2: checkpointing at the next safe point")
        preemption.request()
        threading.Thread(target=watchdog, name="preempt-watchdog", daemon=True).start()

    finished = threading.Event()
    previous = signal.signal(signal.SIGUSR2, on_usr2)
    try:
        return fn()
    except preemption.Preempted:
        leave_for_requeue(max_requeues)
        raise  # unreachable: _leave exits
    finally:
        finished.set()
        signal.signal(signal.SIGUSR2, previous)
        preemption.clear()
