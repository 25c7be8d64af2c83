"""The stages on a real 2-node Slurm cluster whose nodes can fail.

Each node of `slurm/local-cluster.sh start --nodes 2` is a slurmd in its own network and UTS
namespace, so a job spread over both nodes really talks across the nodes' bridge, and killing a
node (`local-cluster.sh kill-node`: its slurmd, job steps and tasks, SIGKILL) is a node crash: Slurm
marks it DOWN after SlurmdTimeout, requeues its jobs (`--requeue`) onto the survivor, and the
requeued run resumes from the last checkpoint. Every result must equal an uninterrupted run's bytes.

Skipped without a cluster of two nodes, unless GPTFL_REQUIRE_SLURM=1 (CI), which fails instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_shards import pretrain_settings, write_config, write_digit_shards
from test_fl_federation import QUICKSTART, SMALL, assert_same_outputs
from test_synth_stage import gptfl, shard_hashes
from test_synth_stage import write_config as write_synth_config
from waiting import BackgroundCommand, wait_for

from gptfl_hpc.orchestrate.stages import PRETRAIN
from gptfl_hpc.orchestrate.submit import submit_one
from gptfl_hpc.config import load_config
from gptfl_hpc.durable import read_latest
from gptfl_hpc.fl import stage as federate_stage
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.stage import run as pretrain_inline
from gptfl_hpc.synth.stage import verify

pytestmark = [pytest.mark.slurm, pytest.mark.multinode, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]

# A whole node per synthesis task (each node advertises 4 CPUs), so an array spreads over nodes.
WHOLE_NODE = "launcher.slurm.cpus_per_task=4"
PRETRAIN_SAMPLES = 640  # 10 steps per epoch at 2 ranks x 32
PRETRAIN_EPOCHS = 12


# --------------------------------------------------------------------------- the cluster


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def job_nodes(job_id: str) -> set[str]:
    """The nodes the job's last run was given (sacct's NodeList, expanded)."""
    nodelist = slurm("sacct", "-n", "-X", "-P", "-o", "NodeList", "-j", job_id).split()[-1]
    return set(slurm("scontrol", "show", "hostnames", nodelist).split())


def array_nodes(array_id: str) -> dict[str, set[str]]:
    """``{task id: nodes}`` of an array job's tasks."""
    out = slurm("sacct", "-n", "-X", "-P", "-o", "JobID,NodeList", "-j", array_id)
    return {
        job.split("_")[1]: set(slurm("scontrol", "show", "hostnames", nodes).split())
        for job, nodes in (line.split("|") for line in out.splitlines())
        if "_" in job and "[" not in job
    }


def restarts(job_id: str) -> int:
    out = slurm("scontrol", "show", "job", job_id)
    return int(re.search(r"Restarts=(\d+)", out).group(1))


def running_node(job_id: str, timeout_s: float = 120) -> str:
    """The node a running single-node job (or array task) is on."""
    found: list[str] = []

    def on_a_node() -> bool:
        out = subprocess.run(["squeue", "-h", "-t", "running", "-j", job_id, "-o", "%N"],
                             capture_output=True, text=True).stdout.split()
        found[:] = out
        return bool(out)

    wait_for(on_a_node, timeout_s, f"job {job_id} to run")
    return found[0]


def kill_node(cluster, node: str) -> None:
    subprocess.run(["bash", str(cluster.script), "kill-node", node], check=True, capture_output=True, timeout=60)


@pytest.fixture
def node_failure(multi_node_cluster):
    """Crash a node with ``node_failure(name)``; afterwards every node is brought back and idle."""
    killed: list[str] = []

    def crash(node: str) -> None:
        killed.append(node)
        kill_node(multi_node_cluster, node)

    yield crash
    if killed:
        subprocess.run(["bash", str(multi_node_cluster.script), "start"], check=True, capture_output=True, timeout=300)


# --------------------------------------------------------------------------- stages across two nodes


def pretrain_config(root: Path, executor: str = "slurm", **stages):
    run_dir = root / "run"
    write_digit_shards(run_dir / "synth", limit=PRETRAIN_SAMPLES)
    launcher = {"executor": executor, "poll_interval_s": 1.0, "preempt_grace_s": 60,
                "slurm": {"time": 15, "cpus_per_task": 1, "max_requeues": 3}, "stages": {"pretrain": stages}}
    settings = pretrain_settings(epochs=PRETRAIN_EPOCHS, checkpoint_every=5, log_every=5)
    return load_config(write_config(root / "config.yaml", run_dir, settings, launcher=launcher))


def test_pretrain_on_two_nodes_equals_two_tasks_on_one_node(tmp_path, multi_node_cluster):
    spread = pretrain_config(tmp_path / "spread", nodes=2)  # 2 ranks as 2 nodes x 1 task
    packed = pretrain_config(tmp_path / "packed", nodes=1)  # 2 ranks as 1 node x 2 tasks
    spread_launcher, spread_job = submit_one(spread, PRETRAIN)
    packed_launcher, packed_job = submit_one(packed, PRETRAIN)
    spread_summary = spread_launcher.wait([spread_job], timeout_s=480)[0]
    packed_summary = packed_launcher.wait([packed_job], timeout_s=480)[0]

    assert job_nodes(str(spread_job.job_id)) == set(multi_node_cluster.nodes[:2])
    assert len(job_nodes(str(packed_job.job_id))) == 1
    assert spread_summary["ranks"] == packed_summary["ranks"] == 2
    assert spread_summary["steps"] == packed_summary["steps"] == PRETRAIN_EPOCHS * 10
    spread_model = PretrainPaths(spread.run_dir).model.read_bytes()
    assert spread_model == PretrainPaths(packed.run_dir).model.read_bytes()


FEDERATE = ["federate.rounds=6", "federate.clients_per_round=8", "federate.ranks=2", "federate.init=scratch"]
FEDERATE_OUT = "federate-scratch"  # federate.init=scratch: FL from scratch, the stage of that name
FEDERATE_SLURM = ["launcher.slurm.time=10", "launcher.poll_interval_s=1", "launcher.preempt_grace_s=30",
                  "--executor", "slurm"]


def gptfl_federate(run_dir: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    args = [sys.executable, "-m", "gptfl_hpc", "federate", str(QUICKSTART), f"run_dir={run_dir}", *SMALL, *FEDERATE,
            *extra, *FEDERATE_SLURM, *(["--wait"] if wait else [])]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def submitted_job_id(run_dir: Path, stage: str) -> str:
    """The Slurm job (or array) id of ``stage``, from submitit's folder in ``RUN/logs/<stage>``."""
    found: list[str] = []

    def submitted() -> bool:
        found[:] = [p.name.split("_")[0] for p in (run_dir / "logs" / stage).glob("*_submitted.pkl")]
        return bool(found)

    wait_for(submitted, 120, f"the {stage} job to be submitted")
    return found[0]


@pytest.fixture(scope="module")
def federate_reference(tmp_path_factory) -> Path:
    """Two local ranks, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("federate-reference")
    federate_stage.run(load_config(QUICKSTART, [f"run_dir={run_dir}", *SMALL, *FEDERATE]))
    return run_dir / FEDERATE_OUT


def test_federate_ranks_on_two_nodes_equal_two_local_ranks(tmp_path, multi_node_cluster, federate_reference):
    run_dir = tmp_path / "run"
    proc = gptfl_federate(run_dir, "launcher.stages.federate.nodes=2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert job_nodes(submitted_job_id(run_dir, FEDERATE_OUT)) == set(multi_node_cluster.nodes[:2])
    assert_same_outputs(federate_reference, run_dir / FEDERATE_OUT)


SYNTH_SIZES = ["synth.count=144", "synth.samples_per_shard=48", "synth.model.steps=12"]


class SynthReference:
    """One task, uninterrupted, with shards long enough for a node to fail in the middle of one.
    Made (prompts, then synthesis, inline) while the first test's array runs on the cluster, and
    waited for when its shards are first compared."""

    def __init__(self, tmp: Path):
        self.run_dir, self.hashes = tmp / "run", None
        self.command = BackgroundCommand(["synth", str(write_synth_config(tmp, "run")), *SYNTH_SIZES], tmp / "synth.log")

    def shard_hashes(self) -> dict[str, str]:
        if self.hashes is None:
            self.command.wait()
            self.hashes = shard_hashes(self.run_dir)
        return self.hashes


@pytest.fixture(scope="module")
def synth_reference(tmp_path_factory):
    reference = SynthReference(tmp_path_factory.mktemp("synth-reference"))
    yield reference
    reference.command.stop()


def synth_on_slurm(tmp_path: Path) -> tuple[Path, subprocess.Popen]:
    path = write_synth_config(tmp_path, "run", tasks=3)
    gptfl("prompts", path, *SYNTH_SIZES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gptfl_hpc", "synth", str(path), *SYNTH_SIZES, WHOLE_NODE, "--executor", "slurm",
         "--wait"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return tmp_path / "run", proc


def test_synth_array_spreads_over_both_nodes_with_identical_shards(tmp_path, multi_node_cluster, synth_reference):
    run_dir, proc = synth_on_slurm(tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert shard_hashes(run_dir) == synth_reference.shard_hashes() and verify(run_dir) == []
    nodes = array_nodes(submitted_job_id(run_dir, "synth"))
    assert sorted(nodes) == ["0", "1", "2"]
    assert set().union(*nodes.values()) == set(multi_node_cluster.nodes[:2])


# --------------------------------------------------------------------------- a node fails mid-job


def test_synth_task_on_a_failed_node_is_requeued_and_resumes_identically(tmp_path, synth_reference, node_failure):
    run_dir, proc = synth_on_slurm(tmp_path)
    array = submitted_job_id(run_dir, "synth")
    # After task 1 has committed a block of its shard, its node fails.
    wait_for(lambda: list((run_dir / "synth" / ".partial" / "shard-00001").glob("*.npz")), 300,
             "task 1 to commit a block")
    node = running_node(f"{array}_1")
    node_failure(node)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]

    # No task lost, none duplicated: exactly the uninterrupted run's shards.
    assert shard_hashes(run_dir) == synth_reference.shard_hashes() and verify(run_dir) == []
    assert '"samples": 144' in out
    assert [restarts(f"{array}_{task}") for task in range(3)] == [0, 1, 0]
    assert node not in array_nodes(array)["1"]
    log = "".join(p.read_text() for p in (run_dir / "logs" / "synth").glob(f"{array}_1_*_log.err"))
    assert "resumes after" in log, log[-3000:]


def test_pretrain_job_on_a_failed_node_resumes_from_its_checkpoint(tmp_path, node_failure, caplog):
    config = pretrain_config(tmp_path / "slurm", nodes=1)
    # sacct shows the job as NODE_FAIL for about a second before Slurm's requeue shows: polled this
    # often, the launcher sees that state and must keep waiting rather than report a failure.
    config = config.model_copy(update={"launcher": config.launcher.model_copy(update={"poll_interval_s": 0.1})})
    paths = PretrainPaths(config.run_dir)
    launcher, job = submit_one(config, PRETRAIN)
    wait_for(lambda: read_latest(paths.checkpoints) is not None, 300, "the first checkpoint")
    node = running_node(str(job.job_id))
    node_failure(node)
    with caplog.at_level("WARNING", logger="gptfl_hpc.launch.launcher"):
        summary = launcher.wait([job], timeout_s=600)[0]

    assert f"job {job.job_id}: its node failed; Slurm requeued it" in caplog.text
    assert summary["resumes"] == 1 and summary["steps"] == PRETRAIN_EPOCHS * 10
    assert restarts(str(job.job_id)) == 1 and node not in job_nodes(str(job.job_id))
    reference = pretrain_config(tmp_path / "local", executor="inline")
    pretrain_inline(reference)
    assert paths.model.read_bytes() == PretrainPaths(reference.run_dir).model.read_bytes()
    assert json.loads(paths.done.read_text())["resumes"] == 1


def test_federate_job_on_a_failed_node_resumes_from_its_checkpoint(tmp_path, federate_reference, node_failure):
    run_dir = tmp_path / "run"
    proc = gptfl_federate(run_dir, wait=False)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    job_id = re.search(r"slurm job (\d+)", out).group(1)

    def checkpointed_round() -> int:
        latest = read_latest(run_dir / FEDERATE_OUT / "checkpoints")
        return int(latest.stem.split("-")[1]) if latest is not None else 0

    wait_for(lambda: checkpointed_round() >= 2, 300, "the job to checkpoint round 2")
    node = running_node(job_id)
    node_failure(node)
    wait_for(lambda: (run_dir / FEDERATE_OUT / "summary.json").exists(), 600, "the requeued job to finish")

    assert restarts(job_id) == 1 and node not in job_nodes(job_id)
    assert_same_outputs(federate_reference, run_dir / FEDERATE_OUT)
    logs = "".join(p.read_text(errors="replace") for p in (run_dir / "logs" / FEDERATE_OUT).rglob("*.err"))
    assert "resum" in logs, logs[-3000:]
    # Every round once in the metrics, none repeated by the requeued run.
    rounds = [json.loads(line)["round"] for line in (run_dir / FEDERATE_OUT / "metrics.jsonl").read_text().splitlines()]
    assert rounds == list(range(7))
