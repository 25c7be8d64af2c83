"""Run-directory locks with real processes: one command submits a run at a time, one process writes
an output, dead holders (a killed pid, a finished Slurm job) never block, a requeued job is its own holder."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_shards import tiny_run_yaml
from waiting import BackgroundCommand, wait_for

from gptfl_hpc.layout import RunLayout
from gptfl_hpc.locks import Busy, output_lock, output_locks, submit_lock
from gptfl_hpc.shards.manifest import sha256_file

REPO = Path(__file__).resolve().parent.parent


#: What the science decides, byte for byte (summaries and the report name the run's folder).
SCIENCE_FILES = ("prompts.json", "synth/manifest.json", "synth/shard-00000.h5", "synth/shard-00001.h5",
                 "synth/shard-00002.h5", "pretrain/model.safetensors", "pretrain/metrics.jsonl",
                 "federate/model.safetensors", "federate/metrics.jsonl")

HOLD = """\
import sys, time
from gptfl_hpc.locks import {kind}
with {kind}({args}):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def gptfl(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gptfl_hpc", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def hold(seconds: float, kind: str, args: str, env: dict | None = None) -> subprocess.Popen:
    """A process holding a lock for ``seconds``; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(kind=kind, args=args), str(seconds)], text=True,
                            stdout=subprocess.PIPE, env={**os.environ, **(env or {})})
    assert proc.stdout.readline().strip() == "held"
    return proc


def science_bytes(run_dir: Path) -> dict[str, str]:
    return {name: sha256_file(run_dir / name) for name in SCIENCE_FILES}


def write_record(path: Path, **holder) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": 1, "start": None, "job": None, "step": None,
              "command": "gptfl run earlier.yaml", "since": time.time() - 60, "token": "earlier", **holder}
    path.write_text(json.dumps(record))


# --------------------------------------------------------------------------- unit level, real processes


def test_a_held_run_dir_is_refused_naming_the_holder_and_nothing_is_left(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold(30, "submit_lock", f"{str(run_dir)!r}")
    try:
        with pytest.raises(Busy) as refused, submit_lock(run_dir):
            pass
    finally:
        holder.kill()
        holder.wait()
    message = str(refused.value)
    assert f"run_dir {run_dir} is in use by" in message and f"host {socket.gethostname()}, pid {holder.pid}" in message
    assert "--wait" in message and "\n" not in message
    with submit_lock(tmp_path / "fresh"):
        assert (tmp_path / "fresh" / "locks" / "submit.lock").is_file()
    assert not (tmp_path / "fresh").exists()  # a run_dir made only for the lock goes again


def test_the_lock_of_a_sigkilled_holder_is_taken_over_with_one_warning(tmp_path, caplog):
    holder = hold(30, "submit_lock", f"{str(tmp_path)!r}")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert RunLayout(tmp_path).lock("submit").is_file()  # left behind
    with caplog.at_level(logging.WARNING, logger="gptfl_hpc.locks"), submit_lock(tmp_path):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"pid {holder.pid} on {socket.gethostname()} is gone" in warnings[0]


def test_a_reused_pid_is_not_the_holder(tmp_path):
    other = hold(30, "submit_lock", f"{str(tmp_path / 'other')!r}")  # a live process, not the holder
    try:
        write_record(RunLayout(tmp_path).lock("submit"), pid=other.pid, start="1")  # started at boot: not it
        with submit_lock(tmp_path):
            pass
    finally:
        other.kill()
        other.wait()


def test_wait_waits_for_the_holder_then_goes_on(tmp_path, caplog):
    holder = hold(3, "submit_lock", f"{str(tmp_path)!r}")
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="gptfl_hpc.locks"), submit_lock(tmp_path, wait=True):
        assert holder.poll() is not None  # the holder ended before this one went on
    assert time.monotonic() - started > 1.5
    waiting = [r.getMessage() for r in caplog.records if "waiting for it (--wait)" in r.getMessage()]
    assert len(waiting) == 1 and f"pid {holder.pid}" in waiting[0]
    holder.wait()


def test_shards_of_other_tasks_are_written_side_by_side(tmp_path):
    shards = ["synth/shard-00000", "synth/shard-00001"]
    task0 = hold(30, "output_locks", f"{str(tmp_path)!r}, {shards!r}")
    try:
        with output_locks(tmp_path, ["synth/shard-00002", "synth/shard-00003"]):  # another task: no wait
            pass
        with pytest.raises(Busy, match=r"synth/shard-00001 is in use by"), output_lock(tmp_path, shards[1]):
            pass
        with output_lock(tmp_path, "pretrain", rank=1):  # rank 0 holds a job's output lock for it
            assert not RunLayout(tmp_path).lock("pretrain").exists()
    finally:
        task0.kill()
        task0.wait()


def test_a_requeued_slurm_job_takes_its_predecessors_lock(tmp_path):
    # The predecessor ran on a node this host cannot look at; the requeued run has the same task id.
    lock = RunLayout(tmp_path).lock("synth/shard-00004")
    write_record(lock, host="node-that-failed", pid=4242, job="7001_4", command="submitit job")
    env = {"SLURM_JOB_ID": "7005", "SLURM_ARRAY_JOB_ID": "7001", "SLURM_ARRAY_TASK_ID": "4"}
    requeued = hold(0, "output_lock", f"{str(tmp_path)!r}, 'synth/shard-00004'", env=env)
    assert requeued.wait() == 0 and not lock.exists()


def test_two_commands_in_one_allocation_are_told_apart(tmp_path):
    env = {"SLURM_JOB_ID": "8100"}
    first = hold(30, "submit_lock", f"{str(tmp_path)!r}", env={**env, "SLURM_STEP_ID": "0"})
    try:
        refused = subprocess.run([sys.executable, "-c", HOLD.format(kind="submit_lock", args=f"{str(tmp_path)!r}"),
                                  "0"], capture_output=True, text=True, env={**os.environ, **env})
        assert refused.returncode == 1 and "Busy" in refused.stderr and "Slurm job 8100" in refused.stderr
        # The tasks of one srun step all run the same command: each is the holder.
        same_step = hold(0, "submit_lock", f"{str(tmp_path)!r}", env={**env, "SLURM_STEP_ID": "0"})
        assert same_step.wait() == 0
    finally:
        first.kill()
        first.wait()


@pytest.mark.slurm
def test_a_lock_of_a_slurm_job_no_longer_queued_is_taken_over(tmp_path, slurm_cluster, caplog):
    job = subprocess.run(["sbatch", "--parsable", "--hold", "--time=5", f"--output={tmp_path}/%j.out", "--wrap", "true"],
                         capture_output=True, text=True, check=True).stdout.strip()
    lock = RunLayout(tmp_path).lock("submit")
    write_record(lock, host="login-node-elsewhere", pid=31337, job=job)
    try:
        with pytest.raises(Busy, match=f"Slurm job {job}"), submit_lock(tmp_path):
            pass  # pending in the queue: a live holder
    finally:
        subprocess.run(["scancel", job], check=True)
    wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip(),
             60, "the cancelled job to leave the queue")
    with caplog.at_level(logging.WARNING, logger="gptfl_hpc.locks"), submit_lock(tmp_path):
        pass
    assert any(f"Slurm job {job} is no longer queued or running" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- whole runs


class SingleRun:
    """One uninterrupted run, started at once and waited for when its bytes are first asked for, so
    it runs alongside the test that compares against it."""

    def __init__(self, config: Path, run_dir: Path):
        self.run_dir, self.bytes = run_dir, None
        self.command = BackgroundCommand(["run", str(config), "--executor", "inline"], run_dir.parent / "run.log")

    def science_bytes(self) -> dict[str, str]:
        if self.bytes is None:
            self.command.wait()
            self.bytes = science_bytes(self.run_dir)
        return self.bytes


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The bytes of one uninterrupted run (inline: the same bytes as the local executor's)."""
    tmp = tmp_path_factory.mktemp("single")
    config = tmp / "run.yaml"
    config.write_text(tiny_run_yaml(tmp / "run", "{executor: local, poll_interval_s: 0.5}"))
    reference = SingleRun(config, tmp / "run")
    yield reference
    reference.command.stop()


@pytest.mark.slow
def test_two_runs_started_together_one_proceeds_the_other_is_refused(tmp_path, single_run):
    config = tmp_path / "run.yaml"
    config.write_text(tiny_run_yaml(tmp_path / "run", "{executor: local, poll_interval_s: 0.5}"))
    runs = [gptfl("run", config), gptfl("run", config)]
    ended = [proc.communicate(timeout=900) for proc in runs]
    codes = sorted(proc.returncode for proc in runs)
    assert codes == [0, 2], [err[-2000:] for _, err in ended]
    (refused_err,) = [err for proc, (_, err) in zip(runs, ended) if proc.returncode == 2]
    lines = [line for line in refused_err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"gptfl: error: run_dir {tmp_path / 'run'} is in use by `gptfl run")
    assert "--wait" in lines[0]
    assert science_bytes(tmp_path / "run") == single_run.science_bytes()
    assert not (tmp_path / "run" / "locks").exists()


@pytest.mark.slow
def test_a_sigkilled_run_does_not_block_the_next_which_finishes_the_same_bytes(tmp_path, single_run):
    config = tmp_path / "run.yaml"
    config.write_text(tiny_run_yaml(tmp_path / "run", "{executor: local, poll_interval_s: 0.5}"))
    first = gptfl("run", config)
    shard_locks = tmp_path / "run" / "locks" / "synth"
    wait_for(lambda: shard_locks.is_dir() and any(shard_locks.iterdir()) or first.poll() is not None, 600,
             "the first run's synthesis to start")
    assert first.poll() is None, first.communicate()[1][-2000:]
    first.send_signal(signal.SIGKILL)  # the command only: its local job must not outlive it
    first.wait()
    second = gptfl("run", config)
    _, err = second.communicate(timeout=900)
    assert second.returncode == 0, err[-3000:]
    assert f"pid {first.pid} on {socket.gethostname()} is gone" in err  # the submit lock, taken over
    assert science_bytes(tmp_path / "run") == single_run.science_bytes()
