"""Whole federations on the quickstart data: ranks, secure mode, GPT-FL init, SIGKILL + resume,
damaged checkpoints, bad input.

Real processes throughout: 2-rank worlds are spawned with gloo, the kill tests run ``gptfl federate
tests/configs/tiny-quickstart.yaml --executor inline`` in a subprocess and SIGKILL its whole process group.
A tiny ConvNet (width 8) and one thread per rank keep each federation to a few seconds.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gptfl_hpc import cli, durable, preemption
from gptfl_hpc.config import load_config
from gptfl_hpc.data.factory import open_dataset
from gptfl_hpc.data.images import to_float_images
from gptfl_hpc.durable import load_checkpoint, read_latest
from gptfl_hpc.fl import stage
from gptfl_hpc.fl.client import FlatModel
from gptfl_hpc.models.config import build_from_config
from gptfl_hpc.models.export import load_model, save_model

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"
GPTFL = [sys.executable, "-m", "gptfl_hpc"]
SMALL = [
    "model.width=8",
    "federate.clients_per_round=4",
    "federate.threads_per_rank=1",
    "federate.eval_every=1",
    "federate.checkpoint_every=1",
]


def config(run_dir: Path, *extra: str):
    return load_config(QUICKSTART, [f"run_dir={run_dir}", *SMALL, *extra])


def write_pretrained(run_dir: Path, width: int = 8, seed: int = 123) -> Path:
    """A pretrain-stage export in its real format (labels + model config in the header)."""
    cfg = config(run_dir, f"model.width={width}")
    labels = cfg.labels.load()
    torch.manual_seed(seed)
    model = build_from_config(cfg.model, len(labels), cfg.data.image_size)
    path = run_dir / "pretrain" / "model.safetensors"
    save_model(path, model, labels, cfg.model.model_dump(mode="json"))
    return path


def model_tensors(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out_dir / "model.safetensors"))


def max_relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    flat_a = torch.cat([a[k].reshape(-1).double() for k in sorted(a)])
    flat_b = torch.cat([b[k].reshape(-1).double() for k in sorted(b)])
    return float((flat_a - flat_b).norm() / flat_a.norm())


def metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- ranks and secure mode


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory) -> Path:
    """The reference: GPT-FL from a pretrain export, FedAvg, 1 rank, 2 rounds."""
    run_dir = tmp_path_factory.mktemp("one-rank")
    write_pretrained(run_dir)
    summary = stage.run(config(run_dir, "federate.rounds=2"))
    assert summary["rounds"] == 2
    return run_dir


def test_gptfl_starts_from_the_pretrained_model(one_rank):
    cfg = config(one_rank)
    labels = cfg.labels.load()
    model = load_model(one_rank / "pretrain" / "model.safetensors", build_from_config(cfg.model, 10, 32), labels)
    test = open_dataset(cfg.data, "test")
    x = to_float_images(torch.from_numpy(test.samples).permute(0, 3, 1, 2))
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1).numpy()
    records = metrics(one_rank / "federate")
    assert records[0]["round"] == 0
    assert records[0]["test_accuracy"] == pytest.approx(float(np.mean(predicted == test.targets)), abs=1e-12)
    assert [r["round"] for r in records] == [0, 1, 2]
    for r in records[1:]:
        assert len(r["clients"]) == 4 and r["gradient_diversity"] > 0
        assert r["params_down"] == r["params_up"] == 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    assert records[2]["params_cumulative"] == 2 * (records[1]["params_down"] + records[1]["params_up"])
    assert records[-1]["test_accuracy"] > records[0]["test_accuracy"]
    assert len((one_rank / "federate" / "timing.jsonl").read_text().splitlines()) == 2


def test_two_ranks_give_the_one_rank_model(one_rank, tmp_path):
    write_pretrained(tmp_path)
    stage.run(config(tmp_path, "federate.rounds=2", "federate.ranks=2"))
    assert max_relative_difference(model_tensors(one_rank / "federate"), model_tensors(tmp_path / "federate")) <= 1e-6
    ours, theirs = metrics(one_rank / "federate"), metrics(tmp_path / "federate")
    assert [r.get("clients") for r in ours] == [r.get("clients") for r in theirs]
    assert [r.get("test_accuracy") for r in ours] == [r.get("test_accuracy") for r in theirs]


def test_secure_two_ranks_equal_plain_within_the_quantization_bound(one_rank, tmp_path):
    write_pretrained(tmp_path)
    cfg = config(tmp_path, "federate.rounds=1", "federate.ranks=2", "federate.secure.enabled=true")
    stage.run(cfg)
    plain_after_round_1 = load_checkpoint(one_rank / "federate" / "checkpoints" / "round-000001.pt")["global_state"]
    secure = load_checkpoint(read_latest(tmp_path / "federate" / "checkpoints"))["global_state"]
    # Decoding error of the average (K clients, f fraction bits), plus the float32 rounding of the
    # average update and of x + update: the update can be larger than the result where they cancel.
    model = load_model(tmp_path / "pretrain" / "model.safetensors", build_from_config(cfg.model, 10, 32), cfg.labels.load())
    update = plain_after_round_1 - FlatModel(model, torch.device("cpu")).state
    eps = torch.finfo(torch.float32).eps
    bound = 4 * 2.0 ** -(cfg.federate.secure.frac_bits + 1) + 2 * eps * (update.abs() + plain_after_round_1.abs())
    difference = (secure - plain_after_round_1).abs()
    assert bool((difference <= bound).all())
    assert metrics(tmp_path / "federate")[1]["clients"] == metrics(one_rank / "federate")[1]["clients"]


def test_baseline_federates_from_scratch_into_its_own_folder(tmp_path):
    summary = stage.run_baseline(config(tmp_path, "federate.rounds=1"))
    assert Path(summary["model"]) == tmp_path / "federate-scratch" / "model.safetensors"
    assert not (tmp_path / "federate").exists()
    assert summary["test_accuracy"] > summary["initial_test_accuracy"]


# --------------------------------------------------------------------------- SIGKILL and resume


def run_killed_then_resumed(run_dir: Path, overrides: list[str], kill_after_round: int) -> None:
    """Start the CLI, SIGKILL its process group once round ``kill_after_round`` is checkpointed, rerun."""
    command = [*GPTFL, "federate", str(QUICKSTART), f"run_dir={run_dir}", *SMALL, *overrides, "--executor", "inline"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = run_dir / ("federate-scratch" if "federate.init=scratch" in overrides else "federate")
    checkpoints = out / "checkpoints"
    deadline = time.monotonic() + 120
    while True:
        latest = read_latest(checkpoints)
        if latest is not None and int(latest.stem.split("-")[1]) >= kill_after_round:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"federate ended or stalled before the kill: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "summary.json").exists(), "the run finished before it was killed"
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)


def assert_same_outputs(a: Path, b: Path) -> None:
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()


def test_sigkilled_quickstart_resumes_bit_identically(tmp_path):
    rounds = ["federate.rounds=6"]
    reference = tmp_path / "reference"
    write_pretrained(reference)
    stage.run(config(reference, *rounds))
    killed = tmp_path / "killed"
    write_pretrained(killed)
    run_killed_then_resumed(killed, rounds, kill_after_round=2)
    assert_same_outputs(reference / "federate", killed / "federate")
    assert len(metrics(killed / "federate")) == 7


def test_sigkilled_vectorized_federation_with_client_eval_resumes_bit_identically(tmp_path):
    """federate.vectorize and federate.client_eval: a killed and resumed run ends with the
    uninterrupted run's bytes, the same per-client scores and so the same holdouts."""
    overrides = ["federate.rounds=5", "federate.vectorize=3", "federate.init=scratch", "federate.algorithm=fedprox",
                 "federate.client_eval.every=2", "federate.client_eval.finetune_steps=1"]
    reference = tmp_path / "reference"
    stage.run(config(reference, *overrides))
    killed = tmp_path / "killed"
    run_killed_then_resumed(killed, overrides, kill_after_round=2)
    assert_same_outputs(reference / "federate-scratch", killed / "federate-scratch")
    records = metrics(killed / "federate-scratch")
    assert len(records) == 6
    assert [r["round"] for r in records if "client_accuracy_mean" in r] == [0, 2, 4, 5]
    summaries = [json.loads((run / "federate-scratch" / "summary.json").read_text()) for run in (reference, killed)]
    assert summaries[0]["client_accuracy"] == summaries[1]["client_accuracy"]
    assert len(summaries[1]["client_accuracy"]) == 10


@pytest.mark.slow
def test_sigkilled_two_rank_scaffold_resumes_bit_identically(tmp_path):
    """SCAFFOLD's client control variates persist through the checkpoint; 2 ranks equal 1 rank."""
    overrides = ["federate.rounds=4", "federate.ranks=2", "federate.algorithm=scaffold", "federate.init=scratch"]
    reference = tmp_path / "reference"
    stage.run(config(reference, *overrides))
    one_rank = tmp_path / "one-rank"
    stage.run(config(one_rank, *overrides, "federate.ranks=1"))
    assert max_relative_difference(model_tensors(reference / "federate-scratch"), model_tensors(one_rank / "federate-scratch")) <= 1e-6
    killed = tmp_path / "killed"
    run_killed_then_resumed(killed, overrides, kill_after_round=2)
    assert_same_outputs(reference / "federate-scratch", killed / "federate-scratch")
    control = load_checkpoint(read_latest(killed / "federate-scratch" / "checkpoints"))["control"]
    sampled = {c for r in metrics(killed / "federate-scratch")[1:] for c in r["clients"]}
    nonzero = {c for c in range(control["clients"].shape[0]) if control["clients"][c].abs().sum() > 0}
    assert nonzero == sampled


# --------------------------------------------------------------------------- damaged checkpoints


def stop_after_next_round(run_dir: Path) -> None:
    """Run the reference's config (2 rounds) until the next round is checkpointed, then stop there."""
    preemption.request()
    try:
        with pytest.raises(preemption.Preempted):
            stage.run(config(run_dir, "federate.rounds=2"))
    finally:
        preemption.clear()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def damaged_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "damaged" in r.getMessage()]


def test_truncated_latest_checkpoint_falls_back_to_the_older_one_and_the_same_bytes(one_rank, tmp_path, caplog):
    write_pretrained(tmp_path)
    stop_after_next_round(tmp_path)
    stop_after_next_round(tmp_path)  # round 2 is the last: checkpointed, not finished
    out = tmp_path / "federate"
    checkpoints = out / "checkpoints"
    newest = checkpoints / "round-000002.pt"
    assert read_latest(checkpoints) == newest and not (out / "model.safetensors").exists()
    assert durable.checkpoint_problem(newest) is None and durable.checksum_file_of(newest).is_file()
    truncate(newest)

    with caplog.at_level(logging.WARNING):
        stage.run(config(tmp_path, "federate.rounds=2"))
    [warning] = damaged_warnings(caplog)
    assert str(newest) in warning and "does not match its checksum" in warning and "resuming from round-000001.pt" in warning
    assert (checkpoints / durable.DAMAGED / "round-000002.pt").stat().st_size == 1000  # kept, not deleted
    assert_same_outputs(one_rank / "federate", out)
    assert read_latest(checkpoints) == newest and durable.checkpoint_problem(newest) is None


@pytest.mark.parametrize(
    "checksum_file, truncated, expected_warning",
    [
        (False, False, None),  # from before checksums: checked by loading it, and used
        (True, True, "does not match its checksum"),
        (False, True, "is unreadable"),
    ],
)
def test_only_checkpoint_resumes_if_intact_else_the_run_starts_over(
    one_rank, tmp_path, caplog, checksum_file, truncated, expected_warning
):
    write_pretrained(tmp_path)
    stop_after_next_round(tmp_path)
    checkpoints = tmp_path / "federate" / "checkpoints"
    only = checkpoints / "round-000001.pt"
    if not checksum_file:
        durable.checksum_file_of(only).unlink()
    if truncated:
        truncate(only)

    with caplog.at_level(logging.INFO):
        stage.run(config(tmp_path, "federate.rounds=2"))
    resumed = any("from round-000001.pt (round 1 of 2)" in r.getMessage() for r in caplog.records)
    if expected_warning is None:
        assert resumed and damaged_warnings(caplog) == []
    else:
        [warning] = damaged_warnings(caplog)
        assert str(only) in warning and expected_warning in warning and "starting over" in warning
        assert not resumed and (checkpoints / durable.DAMAGED / only.name).is_file()
    assert_same_outputs(one_rank / "federate", tmp_path / "federate")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.partition.alpha=0"], "data.partition.alpha"),
        (["federate.clients_per_round=11"], "federate.clients_per_round 11 exceeds the 10 clients"),
        (["federate.ranks=100000"], "ranks"),
        (["federate.algorithm=fedsgd"], "federate.algorithm"),
        (["federate.client.momentm=0.9"], "did you mean 'federate.client.momentum'"),
        (["federate.init_path=/nonexistent/model.safetensors"], "does not exist"),
        ([], "run `gptfl pretrain` first"),
        (["federate.vectorize=0"], "federate.vectorize"),
        (["federate.vectorize=4", "model.name=resnet18"], "BatchNorm2d layer 'bn1'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, overrides, message):
    run_dir = tmp_path / "run"
    code = cli.main(["federate", str(QUICKSTART), f"run_dir={run_dir}", *SMALL, *overrides, "--executor", "inline"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not run_dir.exists()


def test_pretrained_model_of_another_shape_is_refused(tmp_path, capsys):
    write_pretrained(tmp_path, width=16)
    code = cli.main(["federate", str(QUICKSTART), f"run_dir={tmp_path}", *SMALL, "--executor", "inline"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "does not fit model" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "federate").exists()
