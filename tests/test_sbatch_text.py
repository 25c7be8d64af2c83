"""The sbatch script of a dry run, pinned; on a cluster, equal to what submitit submits; and one
requeue counter (``launcher.slurm.max_requeues``) whichever signal handler sees USR2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jobfns
import pytest
from test_slurm_launch import restart_counts
from waiting import wait_for

from gptfl_hpc.config import LauncherConfig, SlurmConfig
from gptfl_hpc.launch import Launcher, Preemptible
from gptfl_hpc.launch.executors import make_executor, sbatch_script

ARRAY = """\
#!/bin/bash

# Parameters
#SBATCH --array=0-4%5
#SBATCH --cpus-per-task=1
#SBATCH --error=/runs/x/logs/synth/%A_%a_0_log.err
#SBATCH --job-name=gptfl-synth
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/runs/x/logs/synth/%A_%a_0_log.out
#SBATCH --requeue
#SBATCH --signal=USR2@120
#SBATCH --time=60
#SBATCH --wckey=submitit

# setup

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /runs/x/logs/synth/%A_%a_%t_log.out --error /runs/x/logs/synth/%A_%a_%t_log.err \
PYTHON -u -m submitit.core._submit /runs/x/logs/synth
"""

MULTI_NODE = """\
#!/bin/bash

# Parameters
#SBATCH --account=acc
#SBATCH --constraint=a100
#SBATCH --cpus-per-task=8
#SBATCH --dependency=afterok:12:13
#SBATCH --error='/runs/x y/logs/pretrain/%j_0_log.err'
#SBATCH --exclusive
#SBATCH --gpus-per-node=4
#SBATCH --job-name=gptfl-pretrain
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --mem=64G
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --open-mode=append
#SBATCH --output='/runs/x y/logs/pretrain/%j_0_log.out'
#SBATCH --partition=gpu
#SBATCH --qos=high
#SBATCH --requeue
#SBATCH --signal=USR2@120
#SBATCH --time=1440
#SBATCH --wckey=submitit

# setup
module load cuda
echo 'hi there'

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output '/runs/x y/logs/pretrain/%j_%t_log.out' --error '/runs/x y/logs/pretrain/%j_%t_log.err' \
--cpu-bind=none PYTHON -u -m submitit.core._submit '/runs/x y/logs/pretrain'
"""

BIG = SlurmConfig(partition="gpu", account="acc", qos="high", time="1-00:00:00", nodes=2, tasks_per_node=4,
                  gpus_per_node=4, cpus_per_task=8, mem="64G", setup=["module load cuda", "echo 'hi there'"],
                  srun_args=["--cpu-bind=none"], extra={"constraint": "a100", "exclusive": True})


def pinned(text: str) -> str:
    return text.replace("\\\n", "")


def normalised(script: str) -> str:
    return script.replace(sys.executable, "PYTHON")


def test_the_array_script_is_pinned():
    script = sbatch_script(LauncherConfig(executor="slurm"), Path("/runs/x/logs/synth"), job_name="gptfl-synth",
                           array=5)
    assert normalised(script) == pinned(ARRAY)


def test_the_multi_node_script_is_pinned():
    script = sbatch_script(LauncherConfig(executor="slurm", slurm=BIG), Path("/runs/x y/logs/pretrain"),
                           job_name="gptfl-pretrain", nodes=2, tasks_per_node=4, dependency="afterok:12:13")
    assert normalised(script) == pinned(MULTI_NODE)


@pytest.mark.slurm
def test_the_dry_run_script_is_what_submitit_submits(tmp_path, slurm_cluster):
    # Held jobs: submitted (so submitit writes its script) but never run.
    launcher = LauncherConfig(executor="slurm", slurm=SlurmConfig(time=5, setup=["echo ready"], extra={"hold": True}))
    one = make_executor(launcher, tmp_path / "one", job_name="gptfl-one", dependency="afterok:1")
    array = make_executor(launcher, tmp_path / "array", job_name="gptfl-array")
    job = one.submit(jobfns.add, 1, 2)
    tasks = array.map_array(jobfns.square, [1, 2, 3])
    try:
        assert job.paths.submission_file.read_text() == sbatch_script(
            launcher, tmp_path / "one", job_name="gptfl-one", dependency="afterok:1")
        assert tasks[0].paths.submission_file.read_text() == sbatch_script(
            launcher, tmp_path / "array", job_name="gptfl-array", array=3)
    finally:
        subprocess.run(["scancel", job.job_id, tasks[0].job_id.split("_")[0]], check=True)


def test_usr2_before_the_stage_requeues_through_the_one_counter(monkeypatch):
    """submitit's handler, in place until the stage starts, calls Preemptible.checkpoint: the
    project's count of restarts decides, not submitit's timeout countdown."""
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    with pytest.raises(RuntimeError, match="preempted after 2 requeues; raise launcher.slurm.max_requeues"):
        Preemptible(jobfns.add, grace_s=30, max_requeues=2).checkpoint(1, 2)


@pytest.mark.slurm
def test_usr2_while_the_result_is_saved_neither_requeues_nor_fails(tmp_path, slurm_cluster):
    """The stage returned; a USR2 while its result is pickled is logged, and the job completes once
    (submitit's handler would requeue it on its own count)."""
    config = LauncherConfig(executor="slurm", poll_interval_s=1.0, slurm=SlurmConfig(time=10, max_requeues=3))
    launcher = Launcher(config, tmp_path / "logs")
    job = launcher.submit(jobfns.slow_to_save, str(tmp_path / "state"), 15.0, name="save")
    wait_for(lambda: (tmp_path / "state" / "saving-0").exists(), 180, "the job to return its result")
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    assert launcher.wait([job], timeout_s=240) == ["saved"]
    assert restart_counts(tmp_path / "state") == [0]
    assert "caught USR2 after the stage ended" in job.stderr()
