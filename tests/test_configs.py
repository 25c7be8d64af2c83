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
from gptfl_hpc.sweep import load_sweep

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PAPER = CONFIGS / "paper"
QUICKSTART = CONFIGS / "quickstart.yaml"
GRIDS = sorted((PAPER / "grids").glob("*.yaml"))
ALL_CONFIGS = sorted(set(CONFIGS.rglob("*.yaml")) - set(GRIDS))
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


# --------------------------------------------------------------------------- sweep grids

#: Per grid: points, shared synthesis runs, shared pretrain runs.
GRID_SIZES = {
    # 3 datasets x 2 models x 2 alphas x 3 seeds; alpha is federate-only, the model is not read by synthesis
    "table2.yaml": (36, 9, 18),
    "tables3-4.yaml": (30, 15, 15),  # 5 datasets x {fedavg, fedadam} x 3 seeds; the algorithm is federate-only
    "synthetic-volume.yaml": (15, 15, 15),  # 5 volumes x 3 seeds: the volume decides the samples
    "sampling-rate.yaml": (12, 3, 3),  # 4 rates x 3 seeds; the rate is federate-only
}


def test_paper_grids_cover_the_sweeps() -> None:
    assert {path.name for path in GRIDS} == set(GRID_SIZES)


@pytest.mark.parametrize("path", GRIDS, ids=_id)
def test_paper_grid_expands_and_shares_upstream_runs(path: Path) -> None:
    sweep = load_sweep(path)
    points, synth, pretrain = GRID_SIZES[path.name]
    shared = (len(sweep.shared_runs("synth")), len(sweep.shared_runs("pretrain")))
    assert (len(sweep.points), *shared) == (points, synth, pretrain)
    assert sweep.sweep_dir == REPO / "runs" / "sweeps" / path.stem
    assert sweep.shared_dir == REPO / "runs" / "sweeps" / "shared"
    assert [axis.name for axis in sweep.axes][-1] == "seed" and sweep.axes[-1].values == (0, 1, 2)
    for point in sweep.points:
        config = point.config
        assert config.run_dir == sweep.sweep_dir / point.name
        assert config.federate.rounds == 500 and config.federate.baseline
        assert tuple(config.synth.guidance) == (1.0, 5.0)
        assert config.seed == point.values["seed"]
    if path.name == "tables3-4.yaml":
        algorithms = {(p.labels["dataset"], p.config.federate.algorithm) for p in sweep.points}
        assert {"speech-commands", "esc50"} <= {dataset for dataset, algorithm in algorithms if algorithm == "fedadam"}
        assert all(p.config.federate.server_lr == (0.01 if p.config.federate.algorithm == "fedadam" else 1.0)
                   for p in sweep.points)
    if path.name == "synthetic-volume.yaml":
        assert sorted({p.config.synth.multiplier for p in sweep.points}) == [1, 2, 3, 5, 10]


def test_paper_grids_share_runs_across_grids() -> None:
    # The sampling-rate sweep is Table 2's CIFAR-10 ConvNet Dir(0.1) at other rates: it needs no
    # synthesis or pretraining of its own once Table 2 has run.
    table2 = load_sweep(PAPER / "grids" / "table2.yaml")
    rates = load_sweep(PAPER / "grids" / "sampling-rate.yaml")
    assert set(rates.shared) <= set(table2.shared)
    # Tables 3/4's CIFAR-10 points read the same synthetic images as Table 2's (another model).
    tables34 = load_sweep(PAPER / "grids" / "tables3-4.yaml")
    cifar10 = {p.synth for p in tables34.points if p.labels["dataset"] == "cifar10"}
    assert cifar10 <= {p.synth for p in table2.points}


@pytest.mark.parametrize("path", GRIDS, ids=_id)
def test_paper_grid_dry_run_prints_every_job(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep_dir = tmp_path / "sweep"
    code = gptfl(["sweep", str(path), "synth.count=1000", "--sweep-dir", str(sweep_dir),
                  "--shared-dir", str(tmp_path / "shared"), "--dry-run", "--executor", "slurm"])
    out, err = capsys.readouterr()
    assert code == 0, err
    points, synth, pretrain = GRID_SIZES[path.name]
    # prompts + synthesis array per synthesis run, one pretrain job per pretrain run, federate and
    # its baseline per point.
    assert out.count("#!/bin/bash") == 2 * synth + pretrain + 2 * points
    assert out.count("#SBATCH --partition=gpu") == out.count("#!/bin/bash")
    assert out.count("sweep: point ") == points
    assert "sweep: nothing submitted" in out
    assert not tmp_path.joinpath("sweep").exists() and not tmp_path.joinpath("shared").exists()  # writes nothing


def test_validate_flags_placeholder_roots(capsys: pytest.CaptureFixture) -> None:
    assert gptfl(["validate", str(PAPER / "cifar10-convnet-dir0.1.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gptfl: error: config: ")
    assert "data.root (/path/to/cifar10)" in err and "synth.model.weights (/path/to/stable-diffusion-2-1)" in err
    assert gptfl(["validate", str(PAPER / "cifar10-convnet-dir0.1.yaml"), "data.root=/data/cifar10",
                  "synth.model.weights=/models/sd"]) == 0
    assert gptfl(["validate", str(PAPER / "grids" / "sampling-rate.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "point clients_per_round=5,seed=0" in err and "data.root" in err
