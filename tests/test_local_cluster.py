"""The one-node Slurm cluster from slurm/local-cluster.sh is up and usable.

Skipped when no cluster is reachable; fails instead with GPTFL_REQUIRE_SLURM=1
(see the `slurm_cluster` fixture in conftest.py). Start the cluster with
`sudo bash slurm/local-cluster.sh start`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

LOCAL_CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "slurm" / "local-cluster.sh"

pytestmark = pytest.mark.slurm

USABLE_NODE_STATES = {"idle", "mix", "alloc"}


def run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def test_nodes_usable(slurm_cluster):
    proc = run(["sinfo", "-h", "-o", "%t"])
    assert proc.returncode == 0, proc.stderr
    states = set(proc.stdout.split())
    # A trailing '*' (not responding), 'down', 'drain' ... are not usable.
    assert states & USABLE_NODE_STATES, f"no idle/mix/alloc node: sinfo states {sorted(states)}"


def test_sacct_works(slurm_cluster):
    proc = run(["sacct", "-n", "-X", "-P", "-o", "JobID,State"])
    assert proc.returncode == 0, f"sacct failed (slurmdbd down?): {proc.stderr}"


def test_local_cluster_status(slurm_cluster):
    state = Path(os.environ.get("GPTFL_SLURM_STATE", "/var/run/gptfl-slurm"))
    if not state.is_dir() and not slurm_cluster.require:
        pytest.skip(f"cluster not started by {LOCAL_CLUSTER_SCRIPT.name} (no {state})")
    proc = run(["bash", str(LOCAL_CLUSTER_SCRIPT), "status"])
    assert proc.returncode == 0, f"status exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"


def test_sbatch_job_completes_and_is_accounted(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    proc = run(
        ["sbatch", "--parsable", "--wait", "-J", "gptfl-test", "-t", "2", "-D", str(tmp_path),
         "-o", str(out), "--wrap", "true"],
        timeout=180,
    )
    assert proc.returncode == 0, f"sbatch --wait exit {proc.returncode}: {proc.stderr}"
    job_id = proc.stdout.strip().split(";")[0]
    assert job_id.isdigit(), proc.stdout

    # Accounting lags the controller a little: poll sacct.
    deadline = time.monotonic() + 30
    state = ""
    while True:
        acct = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
        assert acct.returncode == 0, acct.stderr
        state = acct.stdout.strip()
        if state == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state == "COMPLETED", f"sacct shows job {job_id} as {state!r} after 30 s"


@pytest.mark.multinode
def test_each_node_is_its_own_host(multi_node_cluster):
    """One task per node: each sees its node's hostname, resolved to its own address on the bridge."""
    nodes = len(multi_node_cluster.nodes)
    proc = run(["srun", "-N", str(nodes), "--ntasks-per-node=1", "-t", "2", "bash", "-c",
                'echo "$SLURMD_NODENAME $(hostname) $(getent hosts "$(hostname)" | cut -d" " -f1)"'],
               timeout=120, cwd="/tmp")
    assert proc.returncode == 0, proc.stderr
    seen = sorted(tuple(line.split()) for line in proc.stdout.splitlines())
    assert [(node, host) for node, host, _ in seen] == [(node, node) for node in multi_node_cluster.nodes]
    addresses = [address for _, _, address in seen]
    assert len(set(addresses)) == nodes and not any(a.startswith("127.") for a in addresses)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["start", "--nodes", "zero"], 2, "--nodes must be a whole number from 1 to 99, got 'zero'"),
        (["start", "--nodez", "2"], 2, "usage:"),
        (["kill-node", "gptfl-n99"], 1, "no node 'gptfl-n99'"),
    ],
)
def test_bad_arguments_are_refused(multi_node_cluster, args, code, message):
    proc = run(["bash", str(LOCAL_CLUSTER_SCRIPT), *args])
    assert proc.returncode == code and message in proc.stderr, proc.stderr
