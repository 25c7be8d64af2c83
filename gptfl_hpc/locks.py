"""Locks on a run directory: one command submits a run's stages at a time, one process writes an output.

    RUN/locks/submit.lock                        held by the command that checks and submits the stages
    RUN/locks/prompts.lock, pretrain.lock, ...   held by the job writing that stage's output
    RUN/locks/synth/shard-KKKKK.lock             held by the array task writing that shard

A lock is a small JSON file naming its holder: host, pid and the process's start time, the Slurm job
(``ARRAYJOBID_TASKID`` for an array task), the command line and when it was taken.

What this relies on, so that it works on NFS and other shared file systems as well as on a local
disk: ``link(2)`` of a fully written, uniquely named file onto the lock's name is atomic and fails
with ``EEXIST`` when the name exists, on every host that mounts the folder (NFSv2/3 and v4 alike). A
link whose reply was lost on the wire is recognised by its link count of 2. ``rename(2)`` within one
folder is atomic, which is how a stale lock is moved aside. ``flock``/``fcntl`` locks are not used:
on NFS they depend on the lock daemon and vanish with the client that held them.

A holder that is gone leaves a stale lock, which the next taker replaces with one warning line: a
holder on this host whose pid no longer exists or now belongs to another process (its start time in
``/proc/PID/stat`` differs), or a Slurm job that ``squeue`` no longer lists as pending or running.
A Slurm job holds its locks as its job id: a job Slurm started again under the same id (after a
preemption, a kill or a node failure) takes its dead predecessor's locks as its own, even from
another node where that pid cannot be looked at; so do the tasks of one ``srun`` step, which all
run the same command. Two commands inside one allocation (``salloc``) are told apart by their pids.
A lock on another host without a Slurm job cannot be judged from here: it is refused, naming the
file to remove once that process is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout

log = logging.getLogger(__name__)

#: Seconds between two looks at a busy lock with ``--wait``.
WAIT_POLL_S = 2.0

#: squeue states of a job that has not ended.
_QUEUED = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
           "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}


class Busy(UserError):
    """The lock is held by a live process; the message names it and how to wait."""


def slurm_task_id() -> Optional[str]:
    """``ARRAYJOBID_TASKID`` for an array task, the plain job id otherwise, None outside Slurm."""
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID")


# --------------------------------------------------------------------------- who holds it


def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks after boot (``/proc/PID/stat`` field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _command() -> str:
    argv = list(sys.argv)
    program = Path(argv[0]).name if argv else "python"
    if program in ("gptfl", "__main__.py") or argv[0].endswith("gptfl_hpc/__main__.py"):
        program = "gptfl"
    text = shlex.join([program, *argv[1:]])
    return text if len(text) <= 200 else text[:197] + "..."


def this_process() -> dict[str, Any]:
    """The holder record of the calling process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "job": slurm_task_id(),
            "step": os.environ.get("SLURM_STEP_ID"), "command": _command(), "since": time.time()}


def process_alive(holder: dict[str, Any]) -> Optional[bool]:
    """Whether the process of ``holder`` still runs: None when that cannot be told from this host."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = int(holder.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    start = _start_time(pid)
    return start is None or holder.get("start") in (None, start)


def _job_queued(job: str) -> Optional[bool]:
    """Whether Slurm still has ``job`` pending or running; None without a reachable squeue."""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        # An id Slurm has forgotten is an error ("Invalid job id"); a dead controller says otherwise.
        return False if "Invalid job id" in proc.stderr else None
    return bool(set(proc.stdout.split()) & _QUEUED)


def _stale_reason(holder: dict[str, Any]) -> Optional[str]:
    """Why ``holder`` no longer holds its lock, or None while it (possibly) does."""
    job = holder.get("job")
    own_job = job is not None and job == slurm_task_id()
    alive = process_alive(holder)
    if alive is False:
        return f"pid {holder.get('pid')} on {holder.get('host')} is gone"
    if alive is None and own_job:
        return f"it is this Slurm job's own ({job}): a run before a requeue, or another node's task of this job"
    if alive and own_job and holder.get("step") is not None and holder.get("step") == os.environ.get("SLURM_STEP_ID"):
        return f"it is another task of this job step ({job})"
    if alive is None and job is not None and _job_queued(job) is False:
        return f"Slurm job {job} is no longer queued or running"
    return None


def describe(holder: dict[str, Any]) -> str:
    """``` `gptfl run ...` (host h, pid 1, Slurm job 7) since 2024-01-02 03:04:05```"""
    where = f"host {holder.get('host')}, pid {holder.get('pid')}"
    if holder.get("job"):
        where += f", Slurm job {holder['job']}"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
    return f"`{holder.get('command', '?')}` ({where}) since {since}"


# --------------------------------------------------------------------------- taking and releasing


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written by a taker that links only finished files: cannot happen; treat as foreign
    return holder if isinstance(holder, dict) else {}


def _made_folders(path: Path) -> list[Path]:
    """Make ``path``'s folder; the folders this made, deepest first (removed again on release)."""
    missing = []
    folder = path.parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _try_link(path: Path, record: dict[str, Any]) -> bool:
    """Create ``path`` holding ``record`` if it does not exist; True when this call created it."""
    tmp = path.with_name(f".{path.name}.{record['token']}.tmp")
    try:
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n")
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:
            # NFS: the link may have been made although its reply was lost.
            return os.stat(tmp).st_nlink == 2
    finally:
        tmp.unlink(missing_ok=True)


def _set_aside(path: Path, holder: dict[str, Any]) -> None:
    """Move a stale lock out of the way, restoring it if what was moved is a fresh holder's."""
    aside = path.with_name(f".{path.name}.stale.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another taker moved it first
    moved = _read(aside)
    if moved is not None and moved.get("token") != holder.get("token"):
        with contextlib.suppress(OSError):
            os.link(aside, path)  # a new holder took it between our read and our rename: give it back
    aside.unlink(missing_ok=True)


class Lock:
    """One lock file; ``what`` names the thing it guards in messages (``run_dir X``, ``RUN/pretrain``)."""

    def __init__(self, path: Path, what: str, how_to_wait: str):
        self.path = Path(path)
        self.what = what
        self.how_to_wait = how_to_wait
        self.record: Optional[dict[str, Any]] = None
        self._made: list[Path] = []

    def try_take(self) -> Optional[dict[str, Any]]:
        """Take the lock: None on success, else the live holder."""
        record = {**this_process(), "token": uuid.uuid4().hex}
        for _ in range(100):
            try:
                self._made = _made_folders(self.path) or self._made
                if _try_link(self.path, record):
                    self.record = record
                    return None
            except FileNotFoundError:
                continue  # a releasing holder removed the empty folder meanwhile: make it again
            holder = _read(self.path)
            if holder is None:
                continue  # released meanwhile
            if holder.get("pid") == record["pid"] and holder.get("host") == record["host"] \
                    and holder.get("start") == record["start"]:
                return None  # this process holds it already: nested use, released by the outer one
            reason = _stale_reason(holder)
            if reason is None:
                return holder
            if holder.get("job") is None or holder.get("job") != record["job"]:
                log.warning("taking over the lock of %s on %s: %s", describe(holder), self.what, reason)
            _set_aside(self.path, holder)
        raise RuntimeError(f"could not take {self.path} in 100 tries")

    def take(self, wait: bool = False, poll_s: float = WAIT_POLL_S) -> None:
        said = False
        while (holder := self.try_take()) is not None:
            if not wait:
                raise Busy(f"{self.what} is in use by {describe(holder)}; {self.how_to_wait}, "
                           f"or remove {self.path} if that process is gone")
            if not said:
                log.info("%s is in use by %s; waiting for it (--wait)", self.what, describe(holder))
                said = True
            time.sleep(poll_s)
        if said:
            log.info("%s is free; going on", self.what)

    def release(self) -> None:
        if self.record is None:
            return
        holder = _read(self.path)
        if holder is not None and holder.get("token") == self.record["token"]:
            self.path.unlink(missing_ok=True)
        self.record = None
        # Empty lock folders go, and the folders taking the lock made (a run_dir a refused command
        # would otherwise leave behind); deepest first, a folder still in use stays.
        locks = self.path.parents[: next(i for i, p in enumerate(self.path.parents) if p.name == "locks") + 1]
        for folder in dict.fromkeys([*locks, *self._made]):
            try:
                folder.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def holding(locks: Iterable[Lock], wait: bool = False) -> Iterator[None]:
    """Hold every lock of ``locks`` (taken in path order, so two waiters never deadlock) until the block ends."""
    taken: list[Lock] = []
    try:
        for lock in sorted(locks, key=lambda lock: str(lock.path)):
            lock.take(wait)
            taken.append(lock)
        yield
    finally:
        for lock in reversed(taken):
            lock.release()


# --------------------------------------------------------------------------- the locks of a run


def submit_lock(run_dirs: Union[Path, Iterable[Path]], *, wait: bool = False,
                dry_run: bool = False) -> contextlib.AbstractContextManager:
    """Held by a command while it checks and submits a run's stages (and, on the local executors,
    until its jobs end); a second command on the same run is refused in one line, or with ``wait``
    waits for it. A dry run takes none."""
    if dry_run:
        return contextlib.nullcontext()
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    return holding([Lock(RunLayout(d).lock("submit"), f"run_dir {d}", "run the same command with --wait to wait "
                         "for it") for d in dict.fromkeys(dirs)], wait=wait)


def output_lock(run_dir: Path, name: str, *, rank: int = 0) -> contextlib.AbstractContextManager:
    """Held by the job writing output ``name`` of a run (``pretrain``, ``federate``, ``synth/shard-00003``);
    ranks other than 0 of a multi-task job take none: rank 0 holds it for the job."""
    if rank != 0:
        return contextlib.nullcontext()
    return holding([_output(run_dir, name)])


def output_locks(run_dir: Path, names: Iterable[str]) -> contextlib.AbstractContextManager:
    """``output_lock`` for several outputs at once (the shards of one synthesis task)."""
    return holding([_output(run_dir, name) for name in names])


def _output(run_dir: Path, name: str) -> Lock:
    return Lock(RunLayout(run_dir).lock(name), f"{Path(run_dir) / name}",
                "wait for that job to end (`gptfl status` shows it)")
