"""A full disk in any stage: one line, exit 2, nothing claimed complete that is not, and the same
command finishes byte-identical once space is freed.

Real file systems throughout: a small tmpfs is mounted as the run directory (root only; the test is
skipped otherwise), refusals come from the kernel, and every stage runs through ``python -m
gptfl_hpc`` with the local executor (a submitit job process) or inline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gptfl_hpc.durable import atomic_directory, free_bytes, read_latest, save_checkpoint, sha256_of
from gptfl_hpc.errors import DiskFull
from gptfl_hpc.launch.launcher import REPORT_RESERVE_BYTES
from gptfl_hpc.shards.writer import write_shard

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"
SMALL = [
    "synth.multiplier=0.05",  # 72 samples in 3 shards of 24, each one batch
    "synth.samples_per_shard=24",
    "synth.model.batch_size=24",
    "synth.model.steps=2",
    "model.width=8",
    "pretrain.epochs=2",
    "pretrain.checkpoint_every=2",
    "federate.rounds=3",
    "federate.clients_per_round=4",
    "federate.threads_per_rank=1",
    "launcher.poll_interval_s=1",
]
KIB = 1024


class SmallDisk:
    """A tmpfs mounted at ``path``, unmounted when the test ends."""

    def __init__(self, path: Path, size: int):
        self.path = path
        path.mkdir()
        if os.geteuid() != 0:
            pytest.skip("a tmpfs can only be mounted by root (CI runs the tests as root)")
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")

    def resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill_leaving(self, free: int) -> Path:
        """A filler file that leaves about ``free`` bytes; deleting it frees the space again."""
        filler = self.path / "filler"
        filler.write_bytes(bytes(max(0, free_bytes(self.path) - free)))
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    disks = []

    def mount(size: int) -> SmallDisk:
        disk = SmallDisk(tmp_path / f"disk{len(disks)}", size)
        disks.append(disk)
        return disk

    yield mount
    for disk in disks:
        disk.unmount()


def gptfl(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptfl_hpc", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def assert_succeeded(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_disk_full_line(proc: subprocess.CompletedProcess, where: Path) -> str:
    """Exit 2 (no crash, no core dump), one ``gptfl: error:`` line naming a file under ``where``."""
    assert proc.returncode == 2, f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gptfl: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    line = errors[0]
    assert line.startswith(f"gptfl: error: no space left on device writing {where}/"), line
    assert line.endswith("MB more is needed) and run the same command again"), line
    assert "Traceback" not in proc.stderr.split(line)[-1]
    return line


def file_hashes(folder: Path, pattern: str) -> dict[str, str]:
    return {path.name: sha256_of(path) for path in sorted(folder.glob(pattern))}


def outputs(run_dir: Path) -> dict[str, str]:
    """The bytes a run leaves that must not depend on a full disk on the way."""
    return {
        **{f"synth/{name}": digest for name, digest in file_hashes(run_dir / "synth", "shard-*.h5").items()},
        **{f"{stage}/{name}": sha256_of(run_dir / stage / name)
           for stage in ("pretrain", "federate") for name in ("model.safetensors", "metrics.jsonl")},
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """The three stages uninterrupted on an ordinary disk, in one process (no from-scratch baseline:
    the test does not run it)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert_succeeded(gptfl("run", QUICKSTART, f"run_dir={run_dir}", *SMALL, "federate.baseline=false",
                           "--executor", "inline"))
    return {"outputs": outputs(run_dir), "weights": du(run_dir / "weights"),
            "shard": max((run_dir / "synth" / "shard-00000.h5").stat().st_size, 1)}


def du(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def assert_no_shard_claimed_complete_that_is_not(synth: Path) -> None:
    manifest = json.loads((synth / "manifest.json").read_text()) if (synth / "manifest.json").exists() else {}
    for record in synth.glob("shard-*.json"):
        shard = synth / f"{record.stem}.h5"
        assert shard.is_file(), f"{record.name} records a shard that was never written"
        assert sha256_of(shard) == json.loads(record.read_text())["sha256"]
    for entry in manifest.get("shards", []):
        assert sha256_of(synth / entry["name"]) == entry["sha256"], f"the manifest lists {entry['name']}"
    assert not list(synth.glob(".*.tmp")), "a temporary file was left behind"


def assert_latest_names_a_whole_checkpoint(checkpoints: Path) -> None:
    latest = read_latest(checkpoints)
    if latest is None:
        return
    for line in (checkpoints / "checksums" / f"{latest.name}.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert sha256_of(checkpoints / name) == digest


def test_every_stage_on_a_full_disk_is_one_line_and_resumes_byte_identical(small_disk, reference):
    # Synthesis: room for the tiny weights and about one and a half shards (and what the job sets
    # aside for its report).
    disk = small_disk(REPORT_RESERVE_BYTES + reference["weights"] + int(1.5 * reference["shard"]) + 160 * KIB)
    run_dir = disk.path / "run"
    command = ["synth", QUICKSTART, f"run_dir={run_dir}", *SMALL]
    full = gptfl(*command, "--executor", "local")
    assert_disk_full_line(full, run_dir / "synth")
    assert_no_shard_claimed_complete_that_is_not(run_dir / "synth")
    assert len(list((run_dir / "synth").glob("shard-*.h5"))) < 3
    disk.resize(64 * 1024 * KIB)
    assert_succeeded(gptfl(*command, "--executor", "inline"))
    assert file_hashes(run_dir / "synth", "shard-*.h5") == {
        name.split("/")[1]: digest for name, digest in reference["outputs"].items() if name.startswith("synth/")}

    # Pretraining: room for its first files, not for its checkpoints.
    for stage, room in (("pretrain", 60 * KIB), ("federate", 24 * KIB)):
        filler = disk.fill_leaving(REPORT_RESERVE_BYTES + room)
        command = [stage, QUICKSTART, f"run_dir={run_dir}", *SMALL]
        full = gptfl(*command, "--executor", "local")
        assert_disk_full_line(full, run_dir / stage)
        assert not (run_dir / stage / "done.json").exists() and not (run_dir / stage / "summary.json").exists()
        assert_latest_names_a_whole_checkpoint(run_dir / stage / "checkpoints")
        filler.unlink()
        assert_succeeded(gptfl(*command, "--executor", "inline"))
    assert outputs(run_dir) == reference["outputs"]


# --------------------------------------------------------------------------- the writers alone


def test_a_shard_too_big_for_the_disk_is_disk_full_and_leaves_nothing(small_disk):
    disk = small_disk(256 * KIB)
    x = np.random.default_rng(0).random((64, 3, 32, 32), dtype=np.float32)  # 768 KiB
    arrays = {"x": x, "y": np.zeros(64, np.int64), "index": np.arange(64), "prompt": np.array(["a photo"] * 64)}
    with pytest.raises(DiskFull) as info:
        write_shard(disk.path / "shard-00000.h5", arrays, {"shard": 0})
    # 786 KiB planned, 256 KiB free: about 0.55 MB more, shown as 1 MB.
    assert str(info.value).startswith(f"no space left on device writing {disk.path}/shard-00000.h5: ")
    assert "(about 1 MB more is needed)" in str(info.value)
    assert list(disk.path.iterdir()) == []


def test_torch_save_short_write_is_recognised_as_disk_full(small_disk):
    disk = small_disk(128 * KIB)
    state = {"weights": torch.zeros(96 * KIB), "step": 3}  # 384 KiB of float32
    with pytest.raises(DiskFull) as info:
        save_checkpoint(disk.path / "checkpoints" / "step-3.pt", state)
    assert info.value.path == str(disk.path / "checkpoints" / "step-3.pt")
    # 384 KiB planned less the 128 KiB free once the partial copy is gone.
    assert 250 * KIB <= info.value.needed_bytes <= 260 * KIB
    assert [p.name for p in (disk.path / "checkpoints").iterdir()] == []


def test_a_folder_built_on_a_full_disk_is_not_published(small_disk):
    disk = small_disk(64 * KIB)

    def build(staging: Path) -> None:
        (staging / "weights.bin").write_bytes(bytes(200 * KIB))

    with pytest.raises(DiskFull):
        atomic_directory(disk.path / "weights", build)
    assert list(disk.path.iterdir()) == []


def test_the_process_that_hit_the_full_disk_exits_normally(small_disk):
    """h5py's own failure left a file open in HDF5 and the interpreter crashed at exit (139)."""
    disk = small_disk(128 * KIB)
    script = (
        "import numpy as np\n"
        "from gptfl_hpc.shards.writer import write_shard\n"
        "from gptfl_hpc.errors import DiskFull\n"
        "x = np.ones((100, 3, 32, 32), np.float32)\n"
        "try:\n"
        f"    write_shard(__import__('pathlib').Path({str(disk.path / 's.h5')!r}), {{'x': x}}, {{}})\n"
        "except DiskFull as error:\n"
        "    print(error)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("no space left on device writing ")
    assert "Traceback" not in proc.stderr and h5py.__name__ not in proc.stderr
