"""`gptfl pretrain` killed with SIGKILL at a random step and run again ends with the same bytes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_shards import pretrain_settings, write_config, write_digit_shards

from gptfl_hpc.pretrain.checkpoints import step_of
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 640  # 10 optimizer steps per epoch at 2 ranks x 32
EPOCHS = 6
TOTAL_STEPS = 10 * EPOCHS
CHECKPOINT_EVERY = 5


def make_run(root: Path) -> Path:
    """A run directory with its own copy of the shards, and its config (executor inline)."""
    run_dir = root / "run"
    write_digit_shards(run_dir / "synth", limit=SAMPLES)
    settings = pretrain_settings(epochs=EPOCHS, checkpoint_every=CHECKPOINT_EVERY, log_every=1)
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
    kill_at = random.SystemRandom().randint(CHECKPOINT_EVERY + 1, TOTAL_STEPS - 15)
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
