"""A 2-task pretrain job on the real local Slurm cluster, preempted once with USR2, completes.

Each task is one rank joining the job's torch.distributed world (gloo); USR2 reaches both, they
agree on it at the next step, save a DeepSpeed checkpoint, and rank 0 requeues the job. The
requeued job resumes and must end with the same model bytes as an uninterrupted local run.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from fixtures_shards import pretrain_settings, write_config, write_digit_shards
from waiting import wait_for

from gptfl_hpc.orchestrate.stages import PRETRAIN
from gptfl_hpc.orchestrate.submit import submit_one
from gptfl_hpc.config import load_config
from gptfl_hpc.durable import read_latest
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.stage import run

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]
REPO = Path(__file__).resolve().parents[1]

SAMPLES = 640  # 10 steps per epoch at 2 ranks x 32
EPOCHS = 12


def make_config(root: Path, executor: str) -> Path:
    run_dir = root / "run"
    write_digit_shards(run_dir / "synth", limit=SAMPLES)
    launcher = {"executor": executor, "poll_interval_s": 1.0, "preempt_grace_s": 60,
                "slurm": {"time": 15, "cpus_per_task": 1, "max_requeues": 3}}
    settings = pretrain_settings(epochs=EPOCHS, checkpoint_every=5, log_every=5)
    return write_config(root / "config.yaml", run_dir, settings, launcher=launcher)


def restarts(job_id: str) -> int:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"Restarts=(\d+)", out).group(1))


def test_two_task_job_preempted_once_resumes_to_the_same_model(tmp_path):
    config = load_config(make_config(tmp_path / "slurm", "slurm"))
    paths = PretrainPaths(config.run_dir)
    launcher, job = submit_one(config, PRETRAIN)
    wait_for(lambda: read_latest(paths.checkpoints) is not None, 240, "the first checkpoint")
    subprocess.run(["scancel", "--signal=USR2", str(job.job_id)], check=True)
    # The uninterrupted local run trains while Slurm requeues and resumes the job.
    reference = load_config(make_config(tmp_path / "local", "inline"))
    run(reference)
    summary = launcher.wait([job], timeout_s=480)[0]

    assert summary["ranks"] == 2 and summary["resumes"] == 1 and summary["steps"] == EPOCHS * 10
    assert restarts(str(job.job_id)) == 1
    assert json.loads(paths.done.read_text())["resumes"] == 1

    assert paths.model.read_bytes() == PretrainPaths(reference.run_dir).model.read_bytes()


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[-1] if out else "UNKNOWN"


def test_pretrain_sbatch_runs_one_task_per_rank(tmp_path):
    run_dir = tmp_path / "run"
    write_digit_shards(run_dir / "synth", limit=128)
    config = write_config(tmp_path / "config.yaml", run_dir, pretrain_settings(epochs=1),
                          launcher={"executor": "inline"})
    log = tmp_path / "pretrain.out"
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--ntasks=2", "--time=10", f"--output={log}", str(REPO / "slurm" / "pretrain.sbatch"),
         str(config)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    final = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
    wait_for(lambda: sacct_state(job_id).split()[0] in final, 300, "the sbatch job to end")
    text = log.read_text()
    assert sacct_state(job_id) == "COMPLETED", text[-3000:]
    assert f"pretrain.sbatch: job {job_id} restart 0: 2 tasks" in text
    summary = json.loads(PretrainPaths(run_dir).done.read_text())
    assert summary["ranks"] == 2 and summary["steps"] == 2 and PretrainPaths(run_dir).model.is_file()
