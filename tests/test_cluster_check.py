"""jobs/cluster_check.py: a user's first job on a cluster, through the real launch layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "jobs" / "cluster_check.py"


def check(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(REPO / "tests" / "configs" / "tiny-quickstart.yaml"), f"run_dir={tmp_path}",
         "launcher.poll_interval_s=0.5", "launcher.slurm.tasks_per_node=2", *overrides],
        capture_output=True, text=True, timeout=300,
    )


def test_local_executor(tmp_path):
    out = check(tmp_path, "launcher.executor=local")
    assert out.returncode == 0, out.stderr
    assert "all_reduce ok across 2 ranks" in out.stdout
    assert '"world_size": 2' in out.stdout and '"backend": "gloo"' in out.stdout


def test_bad_config_is_one_line(tmp_path):
    out = check(tmp_path, "launcher.slurm.tasks_per_nod=2")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "cluster_check: error: config: unknown key 'launcher.slurm.tasks_per_nod'; did you mean 'launcher.slurm.tasks_per_node'?"
    ]


@pytest.mark.slurm
def test_on_slurm(tmp_path, slurm_cluster):
    out = check(tmp_path, "launcher.executor=slurm")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("submitted slurm jobs ")
    assert "all_reduce ok across 2 ranks" in out.stdout and '"slurm_job": "' in out.stdout
