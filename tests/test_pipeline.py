"""`gptfl run`: the whole pipeline locally (the quickstart) and as chained Slurm jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "configs" / "quickstart.yaml"
TINY = REPO / "tests" / "configs" / "tiny-quickstart.yaml"  # the same pipeline with the tiny random generator
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def gptfl(*args, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "gptfl_hpc", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"gptfl {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def accuracies(metrics: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return {row["round"]: row["test_accuracy"] for row in rows if "test_accuracy" in row}


#: The quickstart reduced to what its assertions need: a quarter of its synthetic samples (0.5x the
#: clients' data instead of 2x) and 2 rounds. With seeds 0, 1, 2 the synthetic-only accuracy was
#: 0.70, 0.64, 0.64 and GPT-FL led FL from scratch at round 1 by 0.42, 0.42, 0.54.
REDUCED = ["synth.multiplier=0.5", "federate.rounds=2"]


def test_quickstart_pipeline_leaves_a_report(tmp_path):
    """The embedded default end to end, on the shipped demo generator: pretrained on its images
    alone, the model recognises handwritten digits far above chance (0.10), and GPT-FL leads FL from
    scratch after one round. These are properties of the method, with margins measured over seeds."""
    run_dir = tmp_path / "quickstart"
    gptfl("run", QUICKSTART, f"run_dir={run_dir}", *REDUCED, "--executor", "local")
    gptfl_acc = accuracies(run_dir / "federate" / "metrics.jsonl")
    scratch_acc = accuracies(run_dir / "federate-scratch" / "metrics.jsonl")
    assert gptfl_acc[0] >= 0.30, gptfl_acc  # round 0 = the synthetic-only model
    assert gptfl_acc[1] > scratch_acc[1], (gptfl_acc, scratch_acc)
    report = (run_dir / "report" / "report.md").read_text()
    for row in ("| synthetic data only", "| GPT-FL |", "| FL from scratch |"):
        assert row in report
    plots = sorted((run_dir / "report").glob("*.png"))
    assert len(plots) >= 3 and all(p.read_bytes()[:8] == PNG_MAGIC for p in plots)
    assert all(f"]({p.name})" in report for p in plots)
    status = json.loads(gptfl("status", run_dir, "--json").stdout)
    assert {stage: info["state"] for stage, info in status.items()} == dict.fromkeys(status, "done")
    assert status["synth"]["samples"] == "720/720"
    # Everything is on disk: a second run skips every stage and only redraws the report.
    again = gptfl("run", QUICKSTART, f"run_dir={run_dir}", *REDUCED, "--executor", "local").stdout
    for stage in ("prompts", "synth", "pretrain", "federate", "federate-scratch"):
        assert f"run: {stage} already done, skipped" in again


def _queued(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %E"], capture_output=True, text=True).stdout.strip()


@pytest.mark.slurm
def test_slurm_pipeline_is_chained_and_resumes_after_a_cancelled_stage(tmp_path, slurm_cluster):
    run_dir = tmp_path / "run"
    # Pretraining runs long past its first checkpoint: scancel's SIGTERM is ignored by the job until
    # Slurm's SIGKILL KillWait (5 s) later, and it must not finish in between.
    sizes = [f"run_dir={run_dir}", "synth.multiplier=0.25", "synth.samples_per_shard=120", "synth.tasks=3",
             "synth.model.steps=2", "pretrain.epochs=40", "pretrain.checkpoint_every=10", "federate.rounds=2",
             "launcher.slurm.partition=debug", "launcher.poll_interval_s=1"]
    submitted = gptfl("run", TINY, *sizes, "--executor", "slurm").stdout
    jobs = json.loads((run_dir / "jobs.json").read_text())
    assert set(jobs) == {"prompts", "synth", "pretrain", "federate", "federate-scratch", "report"}, submitted
    synth_array = jobs["synth"]["job_ids"][0].split("_")[0]
    assert len(jobs["synth"]["job_ids"]) == 3
    pretrain = jobs["pretrain"]["job_ids"][0]
    dependency = subprocess.run(["scontrol", "show", "job", pretrain], capture_output=True, text=True).stdout
    assert f"afterok:{synth_array}" in dependency  # held back by Slurm, not by a waiting process

    # Cancel pretraining once it has checkpointed; the stages after it are cancelled with it.
    wait_for(lambda: (run_dir / "pretrain" / "checkpoints" / "latest").exists(), 600, "a pretrain checkpoint")
    subprocess.run(["scancel", pretrain], check=True)
    federate = jobs["federate"]["job_ids"][0]
    wait_for(lambda: not _queued(federate) and not _queued(pretrain), 120, "the chain to be cancelled")
    assert not (run_dir / "pretrain" / "model.safetensors").exists()
    shards = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (run_dir / "synth").glob("shard-*.h5")}
    assert len(shards) == 3

    rerun = gptfl("run", TINY, *sizes, "--executor", "slurm", "--wait")
    assert "run: prompts already done, skipped" in rerun.stdout
    assert "run: synth already done, skipped" in rerun.stdout
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (run_dir / "synth").glob("shard-*.h5")} == shards
    summary = json.loads((run_dir / "pretrain" / "done.json").read_text())
    assert summary["resumes"] >= 1  # continued from its checkpoint, not started over
    assert (run_dir / "report" / "report.md").is_file()
    assert (run_dir / "federate" / "model.safetensors").is_file()


@pytest.mark.slurm
def test_pipeline_sbatch_runs_every_stage_in_one_job(tmp_path, slurm_cluster):
    run_dir = tmp_path / "run"
    sizes = [f"run_dir={run_dir}", "synth.multiplier=0.1", "synth.model.steps=2", "pretrain.epochs=1",
             "federate.rounds=2", "federate.baseline=false"]
    job = subprocess.run(
        ["sbatch", "--parsable", "--time=15", f"--output={tmp_path}/%j.out", str(REPO / "slurm" / "pipeline.sbatch"),
         str(TINY), *sizes],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout.strip()
    done = run_dir / "report" / "report.md"
    wait_for(lambda: done.is_file() or (tmp_path / f"{job}.out").exists() and not _queued(job), 600,
             "the pipeline job to end")
    log = (tmp_path / f"{job}.out").read_text() if (tmp_path / f"{job}.out").exists() else ""
    assert done.is_file(), log[-3000:]
    assert "| GPT-FL |" in done.read_text()
    assert json.loads(gptfl("status", run_dir, "--json").stdout)["federate"]["state"] == "done"
