"""A 2-task federate job on the real Slurm cluster, preempted once with USR2, ends with the uninterrupted result.

Skipped without a cluster unless GPTFL_REQUIRE_SLURM=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from test_fl_federation import QUICKSTART, REPO, SMALL, assert_same_outputs, config, metrics
from waiting import wait_for

from gptfl_hpc.durable import read_latest
from gptfl_hpc.fl import stage

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]

OVERRIDES = ["federate.rounds=16", "federate.clients_per_round=8", "federate.ranks=2", "federate.init=scratch"]
OUT = "federate-scratch"  # federate.init=scratch: FL from scratch, the stage of that name
LAUNCHER = ["launcher.slurm.time=10", "launcher.poll_interval_s=1", "launcher.preempt_grace_s=30"]


def latest_round(run_dir) -> int:
    latest = read_latest(run_dir / OUT / "checkpoints")
    return int(latest.stem.split("-")[1]) if latest is not None else 0


def test_two_task_job_preempted_once_completes_with_the_uninterrupted_result(tmp_path):
    run_dir = tmp_path / "slurm"
    submitted = subprocess.run(
        [sys.executable, "-m", "gptfl_hpc", "federate", str(QUICKSTART), f"run_dir={run_dir}", *SMALL, *OVERRIDES,
         *LAUNCHER, "--executor", "slurm"],
        cwd=REPO, check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    job_id = re.search(r"slurm job (\d+)", submitted).group(1)
    wait_for(lambda: latest_round(run_dir) >= 2, 180, "the job to checkpoint round 2")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    # The uninterrupted run federates while Slurm requeues and resumes the job.
    reference = tmp_path / "reference"
    stage.run(config(reference, *OVERRIDES))
    wait_for(lambda: (run_dir / OUT / "summary.json").exists(), 300, "the requeued job to finish")

    logs = "".join(p.read_text(errors="replace") for p in (run_dir / "logs" / OUT).rglob("*") if p.is_file())
    assert "preempted after round" in logs
    restarts = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert re.search(r"Restarts=1\b", restarts), restarts
    assert_same_outputs(reference / OUT, run_dir / OUT)
    assert len(metrics(run_dir / OUT)) == 17
