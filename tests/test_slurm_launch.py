"""The launch layer on a real Slurm cluster (slurm/local-cluster.sh start).

Skipped without a cluster, unless GPTFL_REQUIRE_SLURM=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jobfns
import pytest
from waiting import wait_for

from gptfl_hpc.config import LauncherConfig, SlurmConfig
from gptfl_hpc.launch import JobFailed, Launcher

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]
REPO = Path(__file__).resolve().parents[1]


def slurm_launcher(tmp_path: Path, **slurm) -> Launcher:
    config = LauncherConfig(
        executor="slurm", poll_interval_s=1.0, preempt_grace_s=30, slurm=SlurmConfig(time=10, **slurm)
    )
    return Launcher(config, tmp_path / "logs")


def steps_done(state_dir: Path) -> int:
    state = state_dir / "state.json"
    return json.loads(state.read_text())["done"] if state.exists() else 0


def restart_counts(state_dir: Path) -> list[int]:
    """SLURM_RESTART_COUNT of every start of a task, in order."""
    return [int(line.split()[1]) for line in (state_dir / "starts.log").read_text().splitlines()]


def sacct_states(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def test_map_array_is_one_array_job(tmp_path):
    run = slurm_launcher(tmp_path)
    jobs = run.map_array(jobfns.square, [1, 2, 3], name="squares")
    array_ids = {job.job_id.split("_")[0] for job in jobs}
    assert len(array_ids) == 1 and [job.job_id.split("_")[1] for job in jobs] == ["0", "1", "2"]
    assert run.wait(jobs, timeout_s=180) == [1, 4, 9]
    (array_id,) = array_ids
    expected = {f"{array_id}_{i}": "COMPLETED" for i in range(3)}
    wait_for(lambda: sacct_states(array_id) == expected, 60, "sacct to list the finished array")


def test_dependency_chain(tmp_path):
    run = slurm_launcher(tmp_path)
    first = run.submit(jobfns.add, 2, 3, name="a")
    second = run.submit(jobfns.touch_and_return, str(tmp_path / "b-ran"), 7, name="b", after=[first])
    assert run.wait([first, second], timeout_s=180) == [5, 7]

    failing = run.submit(jobfns.fail, name="a-fails")
    blocked = run.submit(jobfns.touch_and_return, str(tmp_path / "never"), 1, name="b-blocked", after=[failing])
    with pytest.raises(JobFailed, match="deliberate failure"):
        run.wait([failing], timeout_s=180)
    with pytest.raises(JobFailed, match="CANCELLED"):
        run.wait([blocked], timeout_s=180)
    assert not (tmp_path / "never").exists()


def test_preempted_array_task_resumes_and_only_it_is_requeued(tmp_path):
    run = slurm_launcher(tmp_path)
    steps = 8
    dirs = [tmp_path / f"task{i}" for i in range(3)]
    jobs = run.map_array(jobfns.count_task, [(str(d), steps, 1.0) for d in dirs], name="count")
    wait_for(lambda: steps_done(dirs[1]) >= 2, 120, "task 1 to make progress")
    subprocess.run(["scancel", "--signal=USR2", jobs[1].job_id], check=True)
    assert run.wait(jobs, timeout_s=240) == [sum(range(steps))] * 3  # every step exactly once
    assert restart_counts(dirs[1]) == [0, 1]
    assert restart_counts(dirs[0]) == [0] and restart_counts(dirs[2]) == [0]


def test_plain_sbatch_array_with_preemption(tmp_path):
    """slurm/*.sbatch scripts take this path: srun + USR2 handler + requeue of ARRAYJOBID_TASKID."""
    script = tmp_path / "count.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --array=0-2 --requeue --time=10 --open-mode=append\n"
        f"#SBATCH --output={tmp_path}/%A_%a.out\n"
        f"srun {sys.executable} {REPO}/tests/jobfns.py count {tmp_path} 6 1.0\n"
    )
    array_id = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True, env=os.environ
    ).stdout.strip()
    wait_for(lambda: steps_done(tmp_path / "1") >= 2, 120, "task 1 to make progress")
    subprocess.run(["scancel", "--signal=USR2", f"{array_id}_1"], check=True)
    wait_for(lambda: all((tmp_path / str(i) / "result.json").exists() for i in range(3)), 240, "all tasks")
    for i in range(3):
        assert json.loads((tmp_path / str(i) / "result.json").read_text()) == {"sum": sum(range(6)), "rank": "0"}
    assert restart_counts(tmp_path / "1") == [0, 1]
    assert restart_counts(tmp_path / "0") == [0] and restart_counts(tmp_path / "2") == [0]


def test_two_task_job_gets_torch_distributed_env(tmp_path):
    run = slurm_launcher(tmp_path)
    job = run.submit(jobfns.all_reduce_ranks, name="dist", tasks_per_node=2)
    run.wait([job], timeout_s=180)
    results = sorted(job.results(), key=lambda r: r["rank"])
    assert [(r["rank"], r["world"], r["sum"]) for r in results] == [(0, 2, 3.0), (1, 2, 3.0)]


def test_hard_killed_job_is_reported_with_its_log_tail(tmp_path):
    run = slurm_launcher(tmp_path)
    job = run.submit(jobfns.kill_self_hard, name="killed")
    started = time.monotonic()
    with pytest.raises(JobFailed) as info:
        run.wait([job], timeout_s=180)
    report = str(info.value)
    assert time.monotonic() - started < 180
    assert report.startswith(f"job {job.job_id} ") and "last words before SIGKILL" in report


def test_stage_sbatch_script_runs_gptfl(tmp_path):
    out = tmp_path / "stage.out"
    job_id = subprocess.run(
        ["sbatch", "--parsable", f"--output={out}", str(REPO / "slurm" / "stage.sbatch"),
         "validate", str(REPO / "tests" / "configs" / "tiny-quickstart.yaml"), "seed=11"],
        check=True, cwd=REPO, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    wait_for(lambda: sacct_states(job_id).get(job_id) == "COMPLETED", 120, "the sbatch job to complete")
    log = out.read_text()
    assert "stage.sbatch: job" in log and "gptfl validate" in log
    assert "seed: 11" in log and "# config hash" in log
