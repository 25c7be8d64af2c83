"""The synthesis stage end to end with tiny real pipelines: determinism, resume, verify, Slurm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gptfl_hpc.config import load_config
from gptfl_hpc.shards.manifest import sha256_file
from gptfl_hpc.shards.reader import ShardDataset
from gptfl_hpc.synth.stage import run_task, verify

REPO = Path(__file__).resolve().parent.parent
LABELS = ["digit zero", "digit one", "digit two"]

CONFIG = """\
run_dir: {run_dir}
seed: 3
labels:
  names: [digit zero, digit one, digit two]
launcher:
  executor: inline
  poll_interval_s: 1
  slurm:
    partition: debug
    time: "00:15:00"
    array_parallelism: 3
prompts:
  per_class: 2
data:
  image_size: 16
synth:
  count: 36
  samples_per_shard: 12
  tasks: {tasks}
  flush_every: 4
  model:
    kind: stable_diffusion
    weights: tiny
    steps: 2
    batch_size: 4
    num_threads: 1
"""


def write_config(tmp: Path, name: str, tasks: int = 1, extra: str = "") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(CONFIG.format(run_dir=tmp / name, tasks=tasks) + extra)
    return path


def gptfl(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "gptfl_hpc", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"gptfl {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def shard_hashes(run_dir: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted((run_dir / "synth").glob("shard-*.h5"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """An uninterrupted single-task run: 3 shards of 12 samples."""
    tmp = tmp_path_factory.mktemp("reference")
    path = write_config(tmp, "run")
    gptfl("prompts", path)
    gptfl("synth", path)
    hashes = shard_hashes(tmp / "run")
    assert len(hashes) == 3
    assert verify(tmp / "run") == []
    return hashes


def test_three_tasks_make_the_same_bytes_as_one(tmp_path, reference):
    path = write_config(tmp_path, "run", tasks=3)
    gptfl("prompts", path)
    config = load_config(path)
    results = [run_task(config, task) for task in (2, 0, 1)]  # any order, any process
    assert [r["made"] for r in results] == [1, 1, 1]
    assert shard_hashes(tmp_path / "run") == reference
    dataset = ShardDataset(tmp_path / "run" / "synth", LABELS)
    assert len(dataset) == 36 and np.bincount(dataset.targets).tolist() == [12, 12, 12]
    x, _ = dataset[0]
    assert x.shape == (16, 16, 3) and x.dtype == np.uint8
    # Rerunning finds everything complete and makes nothing.
    assert run_task(config, 0)["made"] == 0


def test_sigkill_mid_shard_then_rerun_is_byte_identical(tmp_path, reference):
    path = write_config(tmp_path, "run")
    gptfl("prompts", path)
    proc = subprocess.Popen([sys.executable, "-m", "gptfl_hpc", "synth", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    # Kill right after shard 1's first committed block: mid-shard, with shard 0 complete.
    partial = tmp_path / "run" / "synth" / ".partial" / "shard-00001"
    deadline = time.monotonic() + 240
    while not list(partial.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    status = gptfl("status", tmp_path / "run").stdout
    assert "partial" in status
    assert not (tmp_path / "run" / "synth" / "shard-00002.h5").exists()
    rerun = gptfl("synth", path)
    assert "resumes after" in rerun.stderr  # continued the partial shard, did not start it over
    assert shard_hashes(tmp_path / "run") == reference
    assert not (tmp_path / "run" / "synth" / ".partial").exists() or not any(
        (tmp_path / "run" / "synth" / ".partial").iterdir()
    )


def test_verify_names_a_damaged_shard_and_the_next_run_remakes_it(tmp_path, reference):
    path = write_config(tmp_path, "run")
    gptfl("prompts", path)
    gptfl("synth", path)
    run_dir = tmp_path / "run"
    target = run_dir / "synth" / "shard-00001.h5"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0x40
    target.write_bytes(bytes(data))
    truncated = run_dir / "synth" / "shard-00002.h5"
    truncated.write_bytes(truncated.read_bytes()[:5000])
    checked = gptfl("synth", "verify", run_dir, check=False)
    assert checked.returncode == 1
    assert "BAD shard-00001.h5: sha256" in checked.stdout and "BAD shard-00002.h5" in checked.stdout
    assert "shard-00000" not in checked.stdout
    gptfl("synth", path)
    assert shard_hashes(run_dir) == reference
    assert gptfl("synth", "verify", run_dir).returncode == 0
    kept = sorted(p.name for p in (run_dir / "synth" / "bad").iterdir())
    assert "shard-00001.h5" in kept and "shard-00002.h5" in kept  # moved aside, never deleted


def test_dry_run_prints_the_plan_and_the_array_script_and_writes_nothing(tmp_path):
    path = write_config(tmp_path, "run", tasks=3)
    proc = gptfl("synth", path, "--dry-run", "--executor", "slurm")
    assert "36 samples = 12 per class x 3 labels" in proc.stdout
    assert "3 shards of 12, 3 array tasks" in proc.stdout
    assert "#SBATCH --array=0-2%3" in proc.stdout and "#SBATCH --requeue" in proc.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["synth.guidance=[5, 1]"], "synth.guidance [5.0, 1.0] is inverted"),
        (["synth.count=-3"], "synth.count -3 must be at least 1"),
        (["synth.count=5000", "synth.samples_per_shard=1", "synth.tasks=5000", "--executor", "slurm"],
         "MaxArraySize"),
        (["synth.model.weights=/nonexistent/sd"], "/nonexistent/sd"),
        (["labels.source=bogus"], "labels.source"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, overrides, message):
    path = write_config(tmp_path, "run")
    if "weights" in overrides[0]:
        gptfl("prompts", path, *overrides)  # past the prompts check, so the weights check is what fails
    dry = ["--dry-run"] if "MaxArraySize" in message else []
    proc = gptfl("synth", path, *overrides, *dry, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "run" / "synth").exists()


def test_synth_on_a_fresh_run_makes_the_prompts_first(tmp_path, reference):
    path = write_config(tmp_path, "run")
    proc = gptfl("synth", path)
    assert "synth: prompts: inline job" in proc.stdout and "synth: synth: inline job" in proc.stdout
    assert (tmp_path / "run" / "prompts.json").is_file()
    assert shard_hashes(tmp_path / "run") == reference  # the same bytes as after `gptfl prompts`
    again = gptfl("synth", path)
    assert "prompts already done, skipped" in again.stdout and "synth already done, skipped" in again.stdout


def test_weights_resaved_in_place_never_mix_into_a_run(tmp_path):
    """The run's identity is its config, so only the weights' recorded revision tells that the folder
    it names now holds other weights: a partial run refuses to go on, a finished one says so."""
    from gptfl_hpc.errors import UserError
    from gptfl_hpc.synth.tiny import ensure_tiny

    weights = ensure_tiny("stable_diffusion", tmp_path / "weights")
    path = write_config(tmp_path, "run", tasks=3)
    path.write_text(path.read_text().replace("weights: tiny", f"weights: {weights}"))
    gptfl("prompts", path)
    assert run_task(load_config(path), 0)["made"] == 1  # shard 0 of 3: the run is partial
    unet_config = weights / "unet" / "config.json"
    original = unet_config.read_text()
    unet_config.write_text(original.replace("{", '{"resaved": true,', 1))  # the same path, other weights

    proc = gptfl("synth", path, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "synth.model.weights revision" in lines[0] and "to a new directory for the new weights" in lines[0]
    with pytest.raises(UserError, match="never share a run"):
        run_task(load_config(path), 1)  # an array task started by other means refuses as well
    assert sorted(p.name for p in (tmp_path / "run" / "synth").glob("shard-*.h5")) == ["shard-00000.h5"]

    unet_config.write_text(original)  # the weights the run was made with: it finishes
    assert "synth: synth: inline job" in gptfl("synth", path).stdout
    assert verify(tmp_path / "run") == []
    unet_config.write_text(original.replace("{", '{"resaved": true,', 1))
    again = gptfl("synth", path).stdout
    assert "synth already done, skipped" in again
    assert "synth: note:" in again and "to sample from the new weights, set run_dir (in a sweep, --shared-dir)" in again


def test_a_count_that_is_not_whole_classes_is_said_in_one_line(tmp_path):
    path = write_config(tmp_path, "run")
    proc = gptfl("synth", path, "synth.count=37", "--dry-run")
    note = "synth.count 37 makes 36 samples: whole classes of 12 x 3 labels"
    assert f"synth: {note}" in proc.stdout and proc.stderr.count(note) == 1
    assert "36 samples = 12 per class x 3 labels" in proc.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.slurm
def test_slurm_array_preempted_mid_shard_completes_identically(tmp_path, slurm_cluster):
    # Longer shards and more steps than the other tests, so USR2 lands while a shard is half made.
    sizes = ["synth.count=144", "synth.samples_per_shard=48", "synth.model.steps=20"]
    # The uninterrupted reference (prompts, then synthesis, inline) is made while the array runs.
    reference = subprocess.Popen(
        [sys.executable, "-m", "gptfl_hpc", "synth", str(write_config(tmp_path, "reference")), *sizes],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    path = write_config(tmp_path, "run", tasks=3)
    gptfl("prompts", path, *sizes)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gptfl_hpc", "synth", str(path), *sizes, "--executor", "slurm", "--wait"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    partial = tmp_path / "run" / "synth" / ".partial" / "shard-00001"
    deadline = time.monotonic() + 300
    while not list(partial.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    array = _array_job_id(tmp_path / "run" / "logs" / "synth")
    subprocess.run(["scancel", "--signal=USR2", f"{array}_1"], check=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
    # No duplicates, no gaps: exactly the uninterrupted run's bytes.
    assert shard_hashes(tmp_path / "run") == shard_hashes(tmp_path / "reference")
    log = "".join(p.read_text() for p in (tmp_path / "run" / "logs" / "synth").glob(f"{array}_1_*_log.err"))
    assert "caught USR2" in log and "resumes after" in log, log[-3000:]
    assert '"samples": 144' in out


def _array_job_id(log_dir: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in log_dir.glob("*_submitted.pkl"):
            return path.name.split("_")[0]
        time.sleep(0.2)
    raise AssertionError(f"no submitted array job found in {log_dir}")


@pytest.mark.parametrize(
    "kind, modality",
    [("speecht5", "speech"), ("audioldm", "audio")],
)
def test_audio_generators_make_verified_shards(tmp_path, kind, modality):
    sizes = [f"synth.model.kind={kind}", "synth.model.seconds=0.25", "synth.count=6", "synth.samples_per_shard=3",
             "labels.names=[up, down]"]
    path = write_config(tmp_path, "run")
    gptfl("prompts", path, *sizes)
    gptfl("synth", path, *sizes)
    assert verify(tmp_path / "run") == []
    dataset = ShardDataset(tmp_path / "run" / "synth", ["down", "up"])
    assert dataset.modality == modality and len(dataset) == 6
    wave, _ = dataset[0]
    assert wave.dtype == np.float32 and wave.shape == (4000,) and np.abs(wave).max() > 0


def test_plain_sbatch_array_script(tmp_path, reference, slurm_cluster):
    path = write_config(tmp_path, "run", tasks=3)
    gptfl("prompts", path)
    env = {**os.environ, "GPTFL_REPO": str(REPO)}
    array = subprocess.run(
        ["sbatch", "--parsable", "--array=0-2", "--time=10", f"--output={tmp_path}/%A_%a.out",
         str(REPO / "slurm" / "synth_array.sbatch"), str(path)],
        capture_output=True, text=True, check=True, env=env, cwd=tmp_path,
    ).stdout.strip()
    deadline = time.monotonic() + 300
    while len(shard_hashes(tmp_path / "run")) < 3 and time.monotonic() < deadline:
        time.sleep(1)
    logs = "".join(p.read_text() for p in tmp_path.glob(f"{array}_*.out"))
    assert shard_hashes(tmp_path / "run") == reference, logs[-3000:]
