"""Shared fixtures. Job functions live in tests/jobfns.py, importable by job processes too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent

# Jobs started by submitit (local or Slurm) inherit this, so they can import tests/jobfns.py.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), str(REPO), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture
def quickstart_config() -> Path:
    return REPO / "tests" / "configs" / "tiny-quickstart.yaml"


# --- Slurm cluster (slurm/local-cluster.sh) ---------------------------------

LOCAL_CLUSTER_SCRIPT = REPO / "slurm" / "local-cluster.sh"


@dataclass(frozen=True)
class SlurmCluster:
    """A reachable Slurm cluster: `sinfo` answered."""

    sinfo: str  # output of `sinfo -h -o "%P %a %t %D %N"`, one line per partition/state
    require: bool  # GPTFL_REQUIRE_SLURM=1: the cluster is mandatory for this run


def _slurm_required() -> bool:
    return os.environ.get("GPTFL_REQUIRE_SLURM", "") == "1"


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """Skip unless a Slurm cluster is reachable (`sinfo` works); with
    GPTFL_REQUIRE_SLURM=1 an unreachable cluster fails the test instead.
    Start one with: sudo bash slurm/local-cluster.sh start"""
    require = _slurm_required()
    problem = None
    if shutil.which("sinfo") is None:
        problem = "sinfo not found (Slurm client not installed)"
    else:
        try:
            proc = subprocess.run(
                ["sinfo", "-h", "-o", "%P %a %t %D %N"], capture_output=True, text=True, timeout=30
            )
        except subprocess.TimeoutExpired:
            problem = "sinfo timed out after 30 s"
        else:
            if proc.returncode != 0:
                problem = f"sinfo failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
            else:
                return SlurmCluster(sinfo=proc.stdout, require=require)
    script = LOCAL_CLUSTER_SCRIPT.relative_to(REPO)
    msg = f"no Slurm cluster reachable: {problem}; start one with `sudo bash {script} start`"
    if require:
        pytest.fail(f"GPTFL_REQUIRE_SLURM=1 but {msg}", pytrace=False)
    pytest.skip(msg)


@dataclass(frozen=True)
class MultiNodeCluster:
    """A Slurm cluster with at least two nodes (`slurm/local-cluster.sh start --nodes 2`)."""

    nodes: tuple[str, ...]
    script: Path  # local-cluster.sh: `kill-node NODE` crashes a node, `start` brings it back


@pytest.fixture(scope="session")
def multi_node_cluster(slurm_cluster) -> MultiNodeCluster:
    """Skip unless the reachable cluster has two or more nodes; fail instead with GPTFL_REQUIRE_SLURM=1.
    Start one with: sudo bash slurm/local-cluster.sh start --nodes 2"""
    proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=30)
    states = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
    nodes = tuple(sorted(states))
    script = LOCAL_CLUSTER_SCRIPT.relative_to(REPO)
    down = [node for node, state in states.items() if state.rstrip("*~#") not in ("idle", "mix", "alloc")]
    if len(nodes) >= 2 and down:
        pytest.fail(f"node(s) {', '.join(down)} not usable ({states}); `sudo bash {script} start` brings them back",
                    pytrace=False)
    if len(nodes) >= 2:
        return MultiNodeCluster(nodes=nodes, script=LOCAL_CLUSTER_SCRIPT)
    msg = f"the Slurm cluster has {len(nodes)} node(s); start two with `sudo bash {script} start --nodes 2`"
    if slurm_cluster.require:
        pytest.fail(f"GPTFL_REQUIRE_SLURM=1 but {msg}", pytrace=False)
    pytest.skip(msg)
