"""Submit, chain and wait for stage jobs on any executor: inline, local, slurm or debug.

``Launcher.submit`` and ``Launcher.map_array`` return job handles with submitit's interface
(``job_id``, ``done()``, ``result()``, ``state``, ``stderr()``); ``Launcher.wait`` turns any failure
into a ``JobFailed`` report with the job's state and the last lines of its log, never a hang. A job
that stopped on a ``UserError`` (a full disk, bad input found inside a stage) is reported as that one
line, whichever executor ran it and whichever rank raised it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import subprocess
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from gptfl_hpc.config import LauncherConfig
from gptfl_hpc.durable import refuses_more
from gptfl_hpc.errors import DiskFull, UserError, disk_full_error
from gptfl_hpc.launch.distributed import export_distributed_env
from gptfl_hpc.launch.executors import make_executor
from gptfl_hpc.launch.requeue import leave_for_requeue, run_preemptible
from gptfl_hpc.locks import describe, process_alive, this_process

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
#: The last line of a job's traceback when a ``UserError`` (or a subclass) stopped it.
_USER_ERROR_LINE = re.compile(r"^gptfl_hpc\.errors\.\w+: (.+)$", re.MULTILINE)


class JobFailed(RuntimeError):
    """A job ended without a result; the message is the report to show the user."""


class Preemptible:
    """The callable a job runs: torch.distributed env from the scheduler, USR2 -> requeue.

    ``launch.requeue`` is the one thing that requeues, counting ``launcher.slurm.max_requeues``
    restarts. While the stage runs its USR2 handler is in place; before the stage starts submitit's
    own handler is, and it calls :meth:`checkpoint`, which goes the same way. Once the stage returned
    there is nothing left to save and the result is being written: USR2 is only logged.
    """

    def __init__(self, fn: Callable[..., Any], grace_s: float, max_requeues: int):
        self.fn = fn
        self.grace_s = grace_s
        self.max_requeues = max_requeues
        self.submitter = this_process()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        export_distributed_env()
        _log_to_stderr()
        if os.environ.get("SUBMITIT_EXECUTOR") == "local":
            _end_with(self.submitter)
        reserve = _reserve_room_for_the_report()
        try:
            return run_preemptible(lambda: self.fn(*args, **kwargs), grace_s=self.grace_s,
                                   max_requeues=self.max_requeues)
        except Exception as error:
            # A full disk met outside the durable writers (a log, a lock file, a folder) is still one line.
            full = disk_full_error(error)
            if full is None:
                raise
            if reserve is not None:
                reserve.unlink(missing_ok=True)  # room for submitit's result file and the log's last lines
            if full is error:
                raise
            raise full from error
        finally:
            if reserve is not None:
                reserve.unlink(missing_ok=True)
            signal.signal(signal.SIGUSR2, _after_the_stage)

    def checkpoint(self, *args: Any, **kwargs: Any) -> None:
        """What submitit's USR2 handler calls outside ``__call__``: nothing to save there, so requeue
        through ``launch.requeue`` (which exits, or raises past ``max_requeues``), never submitit's way."""
        leave_for_requeue(self.max_requeues)

    def __repr__(self) -> str:
        return f"Preemptible({getattr(self.fn, '__qualname__', self.fn)!r})"


def _after_the_stage(signum: int, frame: object) -> None:
    log.warning("caught USR2 after the stage ended: saving its result, not requeueing")


def _end_with(submitter: dict[str, Any]) -> None:
    """End this local job when the command that started it is gone (killed): nobody waits for its
    result any more, and the outputs it holds locked would stall the next run of the same command."""

    def watch() -> None:
        while process_alive(submitter) is not False:
            time.sleep(1.0)
        log.error("%s, which started this local job, is gone; stopping the job", describe(submitter))
        os._exit(1)

    threading.Thread(target=watch, name="submitter-watch", daemon=True).start()


#: Bytes a job sets aside beside its log, freed when a full disk stops it: its result file and
#: traceback then still fit, and the submitter reports the refusal instead of a truncated log.
REPORT_RESERVE_BYTES = 256 * 1024


def _reserve_room_for_the_report() -> Optional[Path]:
    folder = os.environ.get("SUBMITIT_FOLDER")  # set in submitit job processes only
    if not folder:
        return None
    reserve = Path(folder) / f".reserve-{os.getpid()}"
    try:
        reserve.write_bytes(bytes(REPORT_RESERVE_BYTES))
    except OSError:  # already full: the job will say so at its first write
        reserve.unlink(missing_ok=True)
        return None
    return reserve


def _log_to_stderr() -> None:
    """A job process starts with no logging set up: send the stages' INFO lines to its log file."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )


class InlineJob:
    """A job run to completion in the calling process, with a submitit job's interface."""

    _ids = itertools.count()

    def __init__(self, fn: Callable[..., Any], args: tuple, name: str, blocked_by: Optional[str] = None):
        self.job_id = f"inline-{next(self._ids)}"
        self.name = name
        self._result: Any = None
        self._error = ""
        self._user_error: Optional[UserError] = None
        if blocked_by:
            self.state, self._error = "CANCELLED", f"not run: dependency {blocked_by} failed"
            return
        try:
            self._result = fn(*args)
            self.state = "COMPLETED"
        except UserError as exc:  # bad input found inside the stage: still one line, exit 2
            self.state, self._error, self._user_error = "FAILED", str(exc), exc
        except Exception:  # reported by Launcher.wait, like a remote job's failure
            self.state, self._error = "FAILED", traceback.format_exc()

    def done(self, force_check: bool = False) -> bool:
        return True

    def result(self) -> Any:
        if self._user_error is not None:
            raise self._user_error
        if self.state != "COMPLETED":
            raise JobFailed(self._error.strip().splitlines()[-1])
        return self._result

    def results(self) -> list:
        return [self.result()]

    def stderr(self) -> str:
        return self._error


class Launcher:
    """Stage jobs for one run: logs and submitit folders live under ``log_dir/<name>/``."""

    def __init__(self, config: LauncherConfig, log_dir: Path):
        self.config = config
        self.log_dir = Path(log_dir)

    @property
    def executor(self) -> str:
        return self.config.executor

    def _wrap(self, fn: Callable[..., Any]) -> Preemptible:
        return Preemptible(fn, self.config.preempt_grace_s, self.config.slurm.max_requeues)

    def _dependency(self, name: str, after: Sequence[Any]) -> tuple[Optional[str], Optional[str]]:
        """(sbatch dependency, id of a failed dependency) for jobs that must wait for ``after``."""
        if not after:
            return None, None
        if self.executor == "slurm":
            # Array tasks are passed whole: "afterok:ARRAY" waits for every task of the array.
            ids = dict.fromkeys(str(job.job_id).split("_")[0] for job in after)
            return "afterok:" + ":".join(ids), None
        # Local executors have no scheduler to hold a job back: wait here instead.
        for job in after:
            try:
                self.wait([job])
            except JobFailed:
                log.error("%s not started: dependency %s failed", name, job.job_id)
                return None, str(job.job_id)
        return None, None

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        name: str,
        after: Sequence[Any] = (),
        nodes: Optional[int] = None,
        tasks_per_node: Optional[int] = None,
    ) -> Any:
        """Run ``fn(*args)`` as one job (``nodes`` × ``tasks_per_node`` tasks) after ``after`` succeed."""
        dependency, failed = self._dependency(name, after)
        if self.executor == "inline" or failed:
            return InlineJob(self._wrap(fn), args, name, blocked_by=failed)
        executor = make_executor(
            self.config.for_stage(name),
            self.log_dir / name,
            job_name=f"gptfl-{name}",
            nodes=nodes,
            tasks_per_node=tasks_per_node,
            dependency=dependency,
        )
        job = executor.submit(self._wrap(fn), *args)
        log.info("submitted %s as %s job %s", name, self.executor, job.job_id)
        return job

    def map_array(self, fn: Callable[..., Any], items: Sequence[Any], *, name: str, after: Sequence[Any] = ()) -> list:
        """One array job, task ``i`` running ``fn(items[i])``; at most ``array_parallelism`` at once."""
        dependency, failed = self._dependency(name, after)
        if self.executor == "inline" or failed:
            return [InlineJob(self._wrap(fn), (item,), f"{name}[{i}]", blocked_by=failed) for i, item in enumerate(items)]
        executor = make_executor(
            self.config.for_stage(name), self.log_dir / name, job_name=f"gptfl-{name}", dependency=dependency
        )
        jobs = executor.map_array(self._wrap(fn), items)
        if jobs:
            log.info("submitted %s as %s array %s (%d tasks)", name, self.executor, jobs[0].job_id.split("_")[0], len(jobs))
        return jobs

    def wait(self, jobs: Sequence[Any], timeout_s: Optional[float] = None) -> list:
        """Results of ``jobs`` in order (rank 0's for multi-task jobs); ``JobFailed`` on any failure."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = list(jobs)
        while pending:
            if self.executor == "slurm":
                # One sacct call refreshes every registered job; per-job forced checks would cost
                # one call per array task per poll.
                pending[0].watcher.update()
            pending = [job for job in pending if not _finished(job)]
            if not pending:
                break
            if deadline is not None and time.monotonic() > deadline:
                states = ", ".join(f"{job.job_id}={job.state}" for job in pending)
                raise JobFailed(f"timed out after {timeout_s:.0f} s waiting for jobs: {states}")
            time.sleep(self.config.poll_interval_s)
        results = []
        for job in jobs:
            try:
                if self._never_leaves_a_result(job):
                    raise JobFailed("it ended without a result")
                # results() waits on every task, so a crashed rank fails the job too.
                results.append(job.results()[0])
            except UserError:
                raise  # an inline stage's bad-input line, reported as such
            except Exception as exc:
                refusal = user_error_of(job, self.executor in ("local", "slurm")) or self._disk_full_for(job)
                if refusal is not None:
                    raise refusal from None
                raise JobFailed(failure_report(job, exc)) from None
        return results

    def _never_leaves_a_result(self, job: Any) -> bool:
        """A finished single-task job whose result file is missing and never will be there: a local
        job (written on this machine before its process ended) or a Slurm job cancelled before it
        started (it has no log). submitit's results() would wait 15 s for it, meant for a shared
        file system slower than the job's end."""
        if getattr(job, "paths", None) is None or getattr(job, "num_tasks", 1) > 1 or _result_written(job):
            return False
        if self.executor == "local":
            return True
        return (self.executor == "slurm" and str(getattr(job, "state", "")).startswith("CANCELLED")
                and not Path(job.paths.stderr).exists())

    def _disk_full_for(self, job: Any) -> Optional[DiskFull]:
        """A job whose disk filled up may have had no room left to record why: its result and the end
        of its log are missing. When the file system of its log refuses more, that is the report."""
        stderr = getattr(getattr(job, "paths", None), "stderr", None)
        folder = Path(stderr).parent if stderr else self.log_dir
        return DiskFull(folder) if folder.is_dir() and refuses_more(folder) else None


def _result_written(job: Any) -> bool:
    """Whether a submitted job (or task) has written its result file."""
    return Path(job.paths.result_pickle).exists()


def user_error_of(job: Any, results_on_disk: bool = False) -> Optional[UserError]:
    """The ``UserError`` that stopped a failed job, from any of its tasks, or None.

    submitit hands back a job's exception only as traceback text (and the job's log holds the same
    text), so the error is recognised by its last line, ``gptfl_hpc.errors.NAME: MESSAGE``. The
    other ranks of a multi-task job fail too once that rank is gone; its line is the one reported.
    ``results_on_disk``: the job ran as its own process (local or Slurm) and leaves a result file.
    """
    tasks = [job.task(i) for i in range(job.num_tasks)] if getattr(job, "num_tasks", 1) > 1 else [job]
    for task in tasks:
        texts = []
        # A task killed before it wrote its result file has no exception to read: submitit would wait
        # out its result timeout (15 s, already waited once by results()) to say so. Its log is read below.
        if not results_on_disk or getattr(task, "paths", None) is None or _result_written(task):  # None: never submitted
            try:
                texts.append(str(task.exception() or ""))
            except Exception:  # a task that never ran has no result to read
                pass
        try:
            texts.append(task.stderr() or "")
        except Exception:
            pass
        for text in texts:
            lines = _USER_ERROR_LINE.findall(text)
            if lines:
                return UserError(lines[-1])
    return None


def _finished(job: Any) -> bool:
    """``job.done()``, except for a job that Slurm requeued after its node failed.

    For a moment after a node fails, sacct shows the job as NODE_FAIL while Slurm already has it
    pending again (``--requeue``); submitit takes NODE_FAIL as final and stops asking. Such a job is
    not finished: its requeued run resumes from the last checkpoint.
    """
    if not job.done():
        return False
    if getattr(job, "state", "") != "NODE_FAIL" or not _still_queued(str(job.job_id)):
        return True
    log.warning("job %s: its node failed; Slurm requeued it, waiting for the new run", job.job_id)
    job.watcher.clear()  # forget the cached final state: the next sacct call reads the requeued one
    return False


# squeue states of a job that has not ended (finished jobs are listed only with -t all).
_QUEUED_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                  "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}


def _still_queued(job_id: str) -> bool:
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(set(proc.stdout.split()) & _QUEUED_STATES)


def failure_report(job: Any, error: BaseException) -> str:
    """Job id, final state, the error's last line and the tail of the job's log."""
    state = getattr(job, "state", "UNKNOWN")
    reason = str(error).strip().splitlines()
    lines = [f"job {job.job_id} {state}: {reason[-1] if reason else type(error).__name__}"]
    try:
        text = job.stderr() or ""
    except Exception:  # the log may not exist when a job never started
        text = ""
    tail = [line for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    if tail:
        lines.append(f"--- last {len(tail)} lines of the job's log ---")
        lines.extend(tail)
    return "\n".join(lines)
