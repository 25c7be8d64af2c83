"""A real 2-rank DeepSpeed ZeRO-2 run (gloo, CPU) on learnable shards: it learns and exports."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_shards import pretrain_settings, write_config, write_digit_shards, write_tone_shard
from torch.utils.data import DataLoader

from gptfl_hpc.config import load_config
from gptfl_hpc.data.digits import DIGIT_LABELS, load_digits
from gptfl_hpc.data.audio_features import collate_padded
from gptfl_hpc.data.factory import feature_transform
from gptfl_hpc.data.images import collate_images, to_float_images
from gptfl_hpc.models.config import build_from_config
from gptfl_hpc.models.export import load_model, read_metadata
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.metrics import read_metrics
from gptfl_hpc.pretrain.stage import run
from gptfl_hpc.shards.reader import ShardDataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    run_dir = root / "run"
    write_digit_shards(run_dir / "synth")
    config = load_config(write_config(root / "config.yaml", run_dir))
    summary = run(config)
    return config, summary


def accuracy_on_digits_test(model, image_size):
    test = load_digits("test", image_size)
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, targets in DataLoader(test, batch_size=200, collate_fn=collate_images):
            correct += int((model(to_float_images(images)).argmax(1) == targets).sum())
    return correct / len(test)


def test_two_rank_zero2_run_learns(trained):
    config, summary = trained
    assert summary["ranks"] == 2 and summary["resumes"] == 0
    records = read_metrics(PretrainPaths(config.run_dir).metrics)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == sorted(r["step"] for r in train) and train[-1]["step"] == summary["steps"]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]  # from ~ln(10) = 2.3 at the start
    assert [e["epoch"] for e in evals] == [1, 2]
    assert summary["final_eval"]["accuracy"] > 0.6 and summary["final_eval"]["macro_f1"] > 0.5  # chance: 0.1


def test_exported_model_loads_for_the_federate_stage(trained):
    config, summary = trained
    path = PretrainPaths(config.run_dir).model
    metadata = read_metadata(path)
    assert metadata["labels"] == DIGIT_LABELS and metadata["model"] == config.model.model_dump(mode="json")
    model = load_model(path, build_from_config(config.model, len(DIGIT_LABELS), config.data.image_size), DIGIT_LABELS)
    # The stage scored each rank's half of the test split; the loaded model scores all of it alike.
    accuracy = accuracy_on_digits_test(model, config.data.image_size)
    assert accuracy == pytest.approx(summary["final_eval"]["accuracy"], abs=1.5 / 360)


def test_checkpoints_are_pruned_and_pointed_at(trained):
    config, summary = trained
    folder = PretrainPaths(config.run_dir).checkpoints
    kept = sorted(p.name for p in folder.glob("step-*"))
    assert (folder / "latest").read_text().strip() == f"step-{summary['steps']:09d}"
    assert len(kept) == config.pretrain.keep_checkpoints and kept[-1] == f"step-{summary['steps']:09d}"
    # Two ranks under ZeRO-2: one optimizer partition each, written without temporary leftovers.
    files = sorted(p.name for p in (folder / kept[-1]).iterdir())
    assert files == ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                     "zero_pp_rank_1_mp_rank_00_optim_states.pt"]


def test_rerun_of_a_complete_stage_returns_at_once(trained):
    config, summary = trained
    paths = PretrainPaths(config.run_dir)
    outputs = [paths.model, paths.done, paths.metrics, paths.timing, paths.checkpoints / "latest"]
    before = [path.stat().st_mtime_ns for path in outputs]
    assert run(config) == summary == json.loads(paths.done.read_text())
    assert [path.stat().st_mtime_ns for path in outputs] == before  # nothing trained, nothing rewritten


def test_one_rank_audio_run_learns_tones(tmp_path):
    """One rank in this process (ZeRO-1), log-mel features, time and frequency masks, no test split."""
    run_dir = tmp_path / "run"
    write_tone_shard(run_dir / "synth" / "shard-00000.h5", count=320, seed=0)
    settings = pretrain_settings(ranks=1, zero_stage=1, epochs=3, evaluate=False, lr=0.01, time_mask=2, freq_mask=4)
    config = load_config(write_config(
        tmp_path / "config.yaml", run_dir, settings,
        data={"dataset": "digits", "audio": {"n_mels": 32, "n_fft": 512}},
        model={"name": "audio_crnn", "hidden_size": 32, "dropout": 0.1},
    ))
    summary = run(config)
    train = [r for r in read_metrics(PretrainPaths(run_dir).metrics) if r["kind"] == "train"]
    assert summary["ranks"] == 1 and summary["final_eval"] is None and summary["steps"] == 30
    assert train[-1]["loss"] < 0.7 * train[0]["loss"]

    model = load_model(PretrainPaths(run_dir).model, build_from_config(config.model, 10, n_mels=32), DIGIT_LABELS)
    held_out = ShardDataset(write_tone_shard(tmp_path / "held-out.h5", count=200, seed=1), DIGIT_LABELS,
                            transform=feature_transform(config.data, "audio"))
    model.eval()
    with torch.no_grad():
        features, targets, lengths = collate_padded([held_out[i] for i in range(len(held_out))])
        accuracy = float((model(features, lengths).argmax(1) == targets).float().mean())
    assert accuracy > 0.5  # chance: 0.1
