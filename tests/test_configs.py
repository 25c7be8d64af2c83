"""The shipped configs: every YAML under configs/ validates, and the paper configs say what they claim.

The paper configs point at data and weights the user fills in (``/path/to/...``). Loading them and
``gptfl run --dry-run`` must work without those files: ``synth.count`` stands in for counting the
real training set. The dry-run runs in-process for every paper config (one interpreter, fast) and as
a real ``python -m gptfl_hpc`` subprocess for a representative few.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptfl_hpc.cli import main as gptfl
from gptfl_hpc.config import load_config
from gptfl_hpc.data.flowers import flowers102_label_names
from gptfl_hpc.data.labels import canonical_label
from gptfl_hpc.data.speech_commands import SPEECH_COMMANDS_V2_WORDS

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PAPER = CONFIGS / "paper"
QUICKSTART = CONFIGS / "quickstart.yaml"
ALL_CONFIGS = sorted(CONFIGS.rglob("*.yaml"))
PAPER_CONFIGS = sorted(PAPER.glob("*.yaml"))
STAGES = ("prompts", "synth", "pretrain", "federate", "federate-scratch")

#: The paper's federation per dataset (§4): (clients, clients per round); None = one per speaker.
FEDERATION = {
    "cifar10": (100, 10),
    "cifar100": (100, 10),
    "flowers102": (50, 50),
    "esc50": (100, 10),
    "speech_commands": (None, 10),
}
GENERATOR = {
    "cifar10": "stable_diffusion",
    "cifar100": "stable_diffusion",
    "flowers102": "stable_diffusion",
    "speech_commands": "speecht5",
    "esc50": "audioldm",
}
#: Its x-vector table is a /path/to placeholder: the dry run says so and still prints every stage.
NEEDS_SPEAKER_TABLE = "speech-commands-audio-crnn-speaker.yaml"


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    # labels.path and run_dir in the shipped configs are relative to the repository root.
    monkeypatch.chdir(REPO)


def test_paper_configs_cover_the_paper() -> None:
    names = {path.stem for path in PAPER_CONFIGS}
    table2 = {f"{d}-{m}-dir{a}" for d in FEDERATION if d not in ("esc50", "speech_commands")
              for m in ("convnet", "vgg19") for a in (0.1, 0.5)}
    tables34 = {f"{d}-{m}-dir0.1-{alg}" for d, m in (("cifar10", "resnet18"), ("cifar100", "resnet50"),
                                                       ("flowers102", "resnet18")) for alg in ("fedavg", "fedadam")}
    audio = {"speech-commands-audio-crnn-speaker", "esc50-audio-crnn-dir0.1"}
    assert names == table2 | tables34 | audio | {"cifar10-vgg19-dir0.1-10x"}


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_id)
def test_config_validates(path: Path) -> None:
    config = load_config(path)
    labels = config.labels.load()
    assert labels and len({canonical_label(name) for name in labels}) == len(labels)
    assert config.model.num_classes in (None, len(labels))


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=_id)
def test_paper_config_matches_its_name_and_the_paper(path: Path) -> None:
    config = load_config(path)
    name = path.stem
    assert config.run_dir == REPO / "runs" / name

    data, federate = config.data, config.federate
    dataset = data.dataset
    assert name.replace("-", "_").startswith(dataset.replace("-", "_"))
    model = "audio_crnn" if dataset in ("esc50", "speech_commands") else name.split("-")[1]
    assert config.model.name == model
    assert config.model.imagenet_weights is None

    clients, per_round = FEDERATION[dataset]
    assert data.partition.num_clients == clients
    assert federate.clients_per_round == per_round
    assert federate.rounds == 500 and federate.init == "pretrain" and federate.baseline
    if dataset == "speech_commands":
        assert data.partition.kind == "speaker"
    else:
        alpha = float(re.search(r"-dir([0-9.]+?)(?:-|$)", name).group(1))
        assert data.partition.kind == "dirichlet" and data.partition.alpha == alpha
    assert federate.algorithm == ("fedadam" if name.endswith("-fedadam") else "fedavg")
    if federate.algorithm == "fedadam":
        assert federate.server.lr is not None and federate.server.tau > 0

    assert config.synth.multiplier == (10 if name.endswith("-10x") else 3)
    assert config.synth.count is None
    assert tuple(config.synth.guidance) == (1.0, 5.0)
    generator = config.synth.model
    assert generator.kind == GENERATOR[dataset]
    placeholders = [generator.weights] + ([generator.vocoder, str(generator.speakers)] if generator.kind == "speecht5" else [])
    assert all(value.startswith("/path/to/") for value in placeholders)
    assert str(data.root).startswith("/path/to/")

    # The synthetic-data recipe: AdamW with a large weight decay and a small learning rate.
    assert config.pretrain.lr <= 1e-4 and config.pretrain.weight_decay >= 0.1
    assert config.pretrain.precision == "auto" and generator.dtype == "auto"

    slurm = config.launcher.slurm
    assert config.launcher.executor == "slurm"
    assert slurm.partition == "gpu" and slurm.account is None
    assert slurm.gpus_per_node == 1 and slurm.cpus_per_task > config.pretrain.workers and slurm.mem


def test_label_files_hold_the_reader_names() -> None:
    def lines(name: str) -> list[str]:
        return (PAPER / "labels" / name).read_text(encoding="utf-8").splitlines()

    assert lines("flowers102.txt") == flowers102_label_names()
    speech = load_config(PAPER / NEEDS_SPEAKER_TABLE).labels.load()
    assert speech == list(SPEECH_COMMANDS_V2_WORDS)  # "no", "off", "on", "yes" stay strings
    for name, count in (("cifar100.txt", 100), ("esc50.txt", 50)):
        names = lines(name)
        # The readers turn the published "_" into spaces ("aquarium fish", "chirping birds").
        assert len(set(names)) == count and all(n == canonical_label(n) for n in names)


def _dry_run_in_process(path: Path, run_dir: Path, capsys: pytest.CaptureFixture, *overrides: str) -> str:
    code = gptfl(["run", str(path), f"run_dir={run_dir}", "synth.count=1000", *overrides,
                  "--dry-run", "--executor", "slurm"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _check_dry_run(out: str, run_dir: Path, partition: str = "gpu", gpus: int = 1) -> None:
    for stage in STAGES:
        assert f"run: {stage}: would submit" in out
    assert out.count("#!/bin/bash") == len(STAGES)
    assert out.count(f"#SBATCH --partition={partition}") == len(STAGES)
    assert out.count(f"#SBATCH --gpus-per-node={gpus}") == len(STAGES)
    assert "run: nothing submitted" in out
    assert not run_dir.exists()  # a dry run writes nothing


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=_id)
def test_paper_dry_run_prints_every_stage(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    out = _dry_run_in_process(path, run_dir, capsys)
    _check_dry_run(out, run_dir)
    if path.name == NEEDS_SPEAKER_TABLE:
        assert "run: synth: inputs not ready: synth.model.speakers" in out


def test_speech_dry_run_needs_only_the_speaker_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "xvectors.npy"
    np.save(table, np.random.default_rng(0).standard_normal((7, 512)).astype(np.float32))
    run_dir = tmp_path / "run"
    out = _dry_run_in_process(PAPER / NEEDS_SPEAKER_TABLE, run_dir, capsys, f"synth.model.speakers={table}")
    _check_dry_run(out, run_dir)


def _dry_run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptfl_hpc", "run", *args, "--dry-run", "--executor", "slurm"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["cifar100-resnet50-dir0.1-fedadam.yaml", "esc50-audio-crnn-dir0.1.yaml"])
def test_cli_dry_run(name: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _dry_run_cli(str(PAPER / name), f"run_dir={run_dir}", "synth.count=1000")
    assert proc.returncode == 0, proc.stderr
    _check_dry_run(proc.stdout, run_dir)


def test_cli_dry_run_of_the_10x_run_shows_its_array(tmp_path: Path) -> None:
    # 10 x CIFAR-10's 50,000 training images: 250 shards of 2,000, one per task, 128 at once.
    run_dir = tmp_path / "run"
    proc = _dry_run_cli(str(PAPER / "cifar10-vgg19-dir0.1-10x.yaml"), f"run_dir={run_dir}", "synth.count=500000")
    assert proc.returncode == 0, proc.stderr
    assert "run: synth: would submit 500000 samples in 250 shards" in proc.stdout
    assert "#SBATCH --array=0-249%128" in proc.stdout
    _check_dry_run(proc.stdout, run_dir)


def test_cli_dry_run_of_quickstart(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _dry_run_cli(str(QUICKSTART), f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    for stage in STAGES:
        assert f"run: {stage}: would submit" in proc.stdout
    assert proc.stdout.count("#!/bin/bash") == len(STAGES)
    assert not run_dir.exists()
