"""The launch layer on the inline and local executors (real submitit processes, no cluster)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import jobfns
import pytest

from gptfl_hpc.commands import stage as stage_command
from gptfl_hpc.config import LauncherConfig
from gptfl_hpc.launch import JobFailed, Launcher
from gptfl_hpc.orchestrate import stages


def launcher(tmp_path: Path, executor: str, **extra) -> Launcher:
    return Launcher(LauncherConfig(executor=executor, poll_interval_s=0.2, **extra), tmp_path / "logs")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_array_results_in_order(tmp_path, executor):
    run = launcher(tmp_path, executor)
    jobs = run.map_array(jobfns.square, [1, 2, 3, 4], name="squares")
    assert run.wait(jobs, timeout_s=120) == [1, 4, 9, 16]
    if executor == "local":
        assert (tmp_path / "logs" / "squares").is_dir()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_chain_runs_after_success_and_never_after_failure(tmp_path, executor):
    run = launcher(tmp_path, executor)
    first = run.submit(jobfns.add, 1, 2, name="a")
    second = run.submit(jobfns.touch_and_return, str(tmp_path / "b-ran"), 5, name="b", after=[first])
    assert run.wait([first, second], timeout_s=120) == [3, 5]

    failing = run.submit(jobfns.fail, name="a-fails")
    blocked = run.submit(jobfns.touch_and_return, str(tmp_path / "never"), 1, name="b-blocked", after=[failing])
    with pytest.raises(JobFailed, match="deliberate failure"):
        run.wait([failing], timeout_s=120)
    with pytest.raises(JobFailed, match=f"dependency {failing.job_id} failed"):
        run.wait([blocked], timeout_s=120)
    assert not (tmp_path / "never").exists()


def test_failure_report_has_state_and_log_tail(tmp_path):
    run = launcher(tmp_path, "local")
    job = run.submit(jobfns.fail, "bad input 42", name="fails")
    with pytest.raises(JobFailed) as info:
        run.wait([job], timeout_s=120)
    report = str(info.value)
    assert report.splitlines()[0].startswith(f"job {job.job_id} ")
    assert "bad input 42" in report and "last" in report and "lines of the job's log" in report


def test_hard_killed_local_job_fails_fast(tmp_path):
    run = launcher(tmp_path, "local")
    job = run.submit(jobfns.kill_self_hard, name="killed")
    with pytest.raises(JobFailed) as info:
        run.wait([job], timeout_s=120)
    assert "last words before SIGKILL" in str(info.value)


def test_local_multi_task_job_gets_torch_distributed_env(tmp_path):
    run = launcher(tmp_path, "local")
    job = run.submit(jobfns.all_reduce_ranks, name="dist", tasks_per_node=2)
    run.wait([job], timeout_s=180)
    results = sorted(job.results(), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 3.0 for r in results)
    assert [r["local_rank"] for r in results] == [0, 1]


def test_preemption_outside_slurm_asks_to_rerun(tmp_path):
    import os
    import signal
    import threading

    run = launcher(tmp_path, "inline")
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGUSR2))
    timer.start()
    job = run.submit(jobfns.count, str(tmp_path / "state"), 20, 0.1, name="count")
    with pytest.raises(JobFailed, match="run the same command again to resume"):
        run.wait([job])
    done = int((tmp_path / "state" / "state.json").read_text().split(":")[1].strip(" }\n"))
    assert 0 < done < 20
    # Running again resumes after the last saved step: each step runs exactly once.
    assert run.wait([run.submit(jobfns.count, str(tmp_path / "state"), 20, 0.0, name="count")]) == [sum(range(20))]


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_stage_command_runs_a_stage_function(tmp_path, quickstart_config, monkeypatch, capsys, executor):
    monkeypatch.setitem(stages.BY_NAME, "prompts", dataclasses.replace(stages.PROMPTS, run=jobfns.stage_echo))
    import argparse

    parser = argparse.ArgumentParser()
    stage_command.add_stage_command(parser.add_subparsers(), "prompts")
    args = parser.parse_args(["prompts", str(quickstart_config), f"run_dir={tmp_path}/run", "seed=4", "--executor", executor])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert '"seed": 4' in out and '"labels": 10' in out
    assert (tmp_path / "run" / "config.sha256").exists()


def test_stage_dry_run_prints_sbatch_and_writes_nothing(tmp_path, quickstart_config, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    stage_command.add_stage_command(parser.add_subparsers(), "prompts")
    args = parser.parse_args(
        ["prompts", str(quickstart_config), f"run_dir={tmp_path}/run", "launcher.slurm.partition=gpu",
         "launcher.slurm.extra={constraint: a100}", "--executor", "slurm", "--dry-run"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for line in ["#SBATCH --partition=gpu", "#SBATCH --constraint=a100", "#SBATCH --requeue", "#SBATCH --signal=USR2@120"]:
        assert line in out
    assert not (tmp_path / "run").exists()


def test_cli_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "gptfl_hpc", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "validate" in out.stdout
