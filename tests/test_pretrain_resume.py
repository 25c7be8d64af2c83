"""A pretrain run stopped at any step -- SIGKILL, preemption, a trainer left after step k -- and run
again ends with the uninterrupted run's bytes, also when its latest checkpoint was damaged since;
identical runs write identical metrics."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_shards import pretrain_settings, write_config, write_digit_shards

from gptfl_hpc import durable, preemption, ranks
from gptfl_hpc.config import load_config
from gptfl_hpc.pretrain.checkpoints import step_of
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.metrics import read_metrics
from gptfl_hpc.pretrain.stage import preflight, record_inputs, run
from gptfl_hpc.pretrain.trainer import Trainer
from gptfl_hpc.rundir import prepare_run_dir

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 640  # 10 optimizer steps per epoch at 2 ranks x 32
EPOCHS = 4
TOTAL_STEPS = 10 * EPOCHS
CHECKPOINT_EVERY = 5


def make_run(root: Path, samples: int = SAMPLES, **overrides) -> Path:
    """A run directory with its own copy of the shards, and its config (executor inline)."""
    run_dir = root / "run"
    write_digit_shards(run_dir / "synth", limit=samples)
    defaults = {"epochs": EPOCHS, "checkpoint_every": CHECKPOINT_EVERY, "log_every": 1}
    settings = pretrain_settings(**{**defaults, **overrides})
    return write_config(root / "config.yaml", run_dir, settings)


def gptfl_pretrain(config: Path, log: Path) -> subprocess.Popen:
    # A session of its own, so the kill takes the command and the ranks it spawned, like a node loss.
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gptfl_hpc", "pretrain", str(config), "--executor", "inline"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def finish(process: subprocess.Popen, log: Path) -> None:
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]


def last_step(metrics: Path) -> int:
    try:
        return max((r["step"] for r in read_metrics(metrics) if r["kind"] == "train"), default=0)
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_rerun_is_byte_identical(tmp_path):
    reference = make_run(tmp_path / "reference")
    killed = make_run(tmp_path / "killed")
    kill_at = random.SystemRandom().randint(CHECKPOINT_EVERY + 1, TOTAL_STEPS - 10)
    paths = PretrainPaths(tmp_path / "killed" / "run")

    log = tmp_path / "killed.log"
    process = gptfl_pretrain(killed, log)
    deadline = time.monotonic() + 240
    while last_step(paths.metrics) < kill_at:
        assert process.poll() is None, f"run ended before step {kill_at}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for training progress"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    reached = last_step(paths.metrics)
    saved = step_of((paths.checkpoints / "latest").read_text().strip())
    assert not paths.model.exists() and CHECKPOINT_EVERY <= saved <= reached < TOTAL_STEPS, (kill_at, saved, reached)

    finish(gptfl_pretrain(killed, log), log)
    finish(gptfl_pretrain(reference, tmp_path / "reference.log"), tmp_path / "reference.log")

    reference_model = PretrainPaths(tmp_path / "reference" / "run").model
    assert paths.model.read_bytes() == reference_model.read_bytes(), f"killed at step {reached}, resumed from {saved}"
    summary = json.loads(paths.done.read_text())
    assert summary["resumes"] == 1
    steps = [r["step"] for r in read_metrics(paths.metrics) if r["kind"] == "train"]
    assert steps == list(range(1, TOTAL_STEPS + 1))  # the resumed run dropped the records it redid
    assert [r["step"] for r in read_metrics(paths.timing)] == steps


# --------------------------------------------------------------------------- one rank, in this process

SMALL_SAMPLES = 320  # 10 optimizer steps per epoch at 1 rank x 32
SMALL_EPOCHS = 2


def make_small_run(root: Path):
    return load_config(make_run(root, samples=SMALL_SAMPLES, ranks=1, epochs=SMALL_EPOCHS))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> PretrainPaths:
    config = make_small_run(tmp_path_factory.mktemp("uninterrupted"))
    run(config)
    return PretrainPaths(config.run_dir)


def assert_same_outputs(paths: PretrainPaths, reference: PretrainPaths) -> None:
    assert paths.model.read_bytes() == reference.model.read_bytes()
    assert paths.metrics.read_bytes() == reference.metrics.read_bytes()
    timed = [r["step"] for r in read_metrics(paths.timing)]
    assert timed == [r["step"] for r in read_metrics(reference.timing)] == list(range(1, 10 * SMALL_EPOCHS + 1))


def test_identical_runs_write_identical_metrics_and_keep_wall_clock_apart(uninterrupted, tmp_path):
    config = make_small_run(tmp_path)
    run(config)
    paths = PretrainPaths(config.run_dir)
    assert_same_outputs(paths, uninterrupted)
    assert not any("samples_per_s" in record for record in read_metrics(paths.metrics))
    timing = read_metrics(paths.timing)
    assert all(record["samples_per_s"] > 0 and record["wall_s"] > 0 for record in timing)


def train_first_steps(rank: int, world_size: int, config, plan, steps: int) -> None:
    """The trainer's pieces for ``steps`` steps, then a checkpoint, and no export."""
    trainer = Trainer(rank, world_size, config, plan)
    trainer.resume()
    for _ in range(steps):
        epoch_done = trainer.step()
        trainer.log_train()
        if epoch_done:
            trainer.evaluate()
    trainer.checkpoint()


def started_small_run(tmp_path):
    """A small run prepared as the stage prepares it, before any rank starts: (config, paths, plan)."""
    config = make_small_run(tmp_path)
    paths = PretrainPaths(config.run_dir)
    plan = preflight(config)
    prepare_run_dir(config)
    record_inputs(paths, plan)
    return config, paths, plan


@pytest.mark.parametrize("k", [7, 10])  # inside the first epoch, and at its end
def test_trainer_stopped_after_step_k_resumes_to_the_uninterrupted_bytes(uninterrupted, tmp_path, k):
    config, paths, plan = started_small_run(tmp_path)
    ranks.run_on_ranks(train_first_steps, 1, (config, plan, k))
    assert step_of((paths.checkpoints / "latest").read_text().strip()) == k and not paths.model.exists()

    summary = run(config)
    assert summary["resumes"] == 1
    assert_same_outputs(paths, uninterrupted)


def test_preempted_run_resumes_to_the_uninterrupted_bytes(uninterrupted, tmp_path):
    config = make_small_run(tmp_path)
    paths = PretrainPaths(config.run_dir)
    preemption.request()
    try:
        with pytest.raises(preemption.Preempted, match="after step 1"):
            run(config)
    finally:
        preemption.clear()
    assert step_of((paths.checkpoints / "latest").read_text().strip()) == 1 and not paths.done.exists()

    assert run(config)["resumes"] == 1
    assert_same_outputs(paths, uninterrupted)


def damaged_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "damaged" in r.getMessage()]


def test_truncated_latest_checkpoint_falls_back_to_the_older_one_and_the_same_bytes(uninterrupted, tmp_path, caplog):
    config, paths, plan = started_small_run(tmp_path)
    ranks.run_on_ranks(train_first_steps, 1, (config, plan, 5))
    ranks.run_on_ranks(train_first_steps, 1, (config, plan, 2))  # resumes at step 5, saves step 7
    older, newest = paths.checkpoints / "step-000000005", paths.checkpoints / "step-000000007"
    assert durable.read_latest(paths.checkpoints) == newest and older.is_dir()
    files = sorted(path.name for path in newest.iterdir())
    listed = [line.split("  ")[1] for line in durable.checksum_file_of(newest).read_text().splitlines()]
    assert listed == [f"{newest.name}/{name}" for name in files] and len(files) == 2  # model states, ZeRO partition
    for name in files:
        path = newest / name
        path.write_bytes(path.read_bytes()[:1000])
    durable.checksum_file_of(older).unlink()  # as written before checksums: checked by loading it

    with caplog.at_level(logging.WARNING):
        summary = run(config)
    [warning] = damaged_warnings(caplog)
    assert str(newest) in warning and "mp_rank_00_model_states.pt" in warning and "resuming from step-000000005" in warning
    set_aside = paths.checkpoints / durable.DAMAGED / newest.name
    assert sorted(path.name for path in set_aside.iterdir()) == files  # kept, not deleted
    assert durable.checksum_file_of(set_aside).is_file()
    assert summary["resumes"] == 1
    assert_same_outputs(paths, uninterrupted)
    kept = ["step-000000015", "step-000000020"]  # pruned with their checksum files
    assert sorted(path.name for path in paths.checkpoints.glob("step-*")) == kept
    assert sorted(path.name for path in (paths.checkpoints / durable.CHECKSUMS).iterdir()) == [f"{k}.sha256" for k in kept]
