"""`gptfl pretrain` on bad input: one line naming the problem and the fix, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import re

import pytest
from fixtures_shards import write_audio_shard, write_config, write_digit_shards

from gptfl_hpc.cli import main

CORES = len(os.sched_getaffinity(0))


def gptfl(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gptfl: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def digits_run(tmp_path):
    run_dir = tmp_path / "run"
    write_digit_shards(run_dir / "synth", limit=200)
    return run_dir, write_config(tmp_path / "config.yaml", run_dir)


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("pretrain.zero_stage=3", ["pretrain.zero_stage 3 partitions the model weights", "use 0, 1 or 2"]),
        ("pretrain.zero_stage=5", ["pretrain.zero_stage 5 is not a ZeRO stage"]),
        ("pretrain.epochs=0", ["pretrain.epochs", "greater than or equal to 1"]),
        ("pretrain.crop_scale=[0.9, 0.5]", ["pretrain.crop_scale [0.9, 0.5]"]),
        ("pretrain.shards=[]", ["pretrain.shards is an empty list"]),
        ("pretrain.precision=fp16", ["pretrain.precision"]),
        ("pretrain.lr=-1", ["pretrain.lr", "greater than 0"]),
        ("pretrain.micro_batch_size=512", ["do not fill one optimizer step", "lower pretrain.micro_batch_size"]),
        (f"pretrain.ranks={CORES + 1}", [f"{CORES + 1} ranks", "use at most"]),
    ],
)
def test_bad_settings_are_one_line(capsys, digits_run, override, fragments):
    run_dir, config = digits_run
    code, _, err = gptfl(capsys, "pretrain", str(config), override)
    assert_one_line_error(code, err, *fragments)
    assert not (run_dir / "pretrain").exists() and not (run_dir / "config.yaml").exists()


def test_no_shards_is_one_line(capsys, tmp_path):
    config = write_config(tmp_path / "config.yaml", tmp_path / "run")
    code, _, err = gptfl(capsys, "pretrain", str(config))
    assert_one_line_error(code, err, "synth does not exist", "run `gptfl synth` first")
    (tmp_path / "run" / "synth").mkdir(parents=True)
    code, _, err = gptfl(capsys, "pretrain", str(config))
    assert_one_line_error(code, err, "no complete shards in", "pretrain.shards")
    assert not (tmp_path / "run" / "pretrain").exists()


def test_audio_shards_for_an_image_model_are_one_line(capsys, tmp_path):
    run_dir = tmp_path / "run"
    write_audio_shard(run_dir / "synth")
    config = write_config(tmp_path / "config.yaml", run_dir)
    code, _, err = gptfl(capsys, "pretrain", str(config))
    assert_one_line_error(code, err, "the shards hold audio but model 'convnet' takes image input", "audio_crnn")
    # The reverse: an audio model on image shards.
    write_digit_shards(tmp_path / "images", limit=64)
    code, _, err = gptfl(capsys, "pretrain", str(config), "model.name=audio_crnn",
                         f"pretrain.shards=[{tmp_path / 'images'}]")
    assert_one_line_error(code, err, "the shards hold image but model 'audio_crnn' takes audio input")


def test_shards_of_other_labels_are_one_line(capsys, tmp_path):
    run_dir = tmp_path / "run"
    write_digit_shards(run_dir / "synth", limit=64)
    config = write_config(tmp_path / "config.yaml", run_dir)
    names = "[" + ", ".join(f"digit {n}" for n in "zero one two three four five six seven eight".split()) + ", cat]"
    code, _, err = gptfl(capsys, "pretrain", str(config), f"labels.names={names}")
    assert_one_line_error(code, err, "'digit nine'", "labels.names")


def test_shards_can_come_from_several_sources(capsys, tmp_path):
    run_dir = tmp_path / "run"
    first = write_digit_shards(tmp_path / "a", shards=1, limit=100)
    write_digit_shards(tmp_path / "b", shards=2, limit=60)
    config = write_config(tmp_path / "config.yaml", run_dir)
    code, out, err = gptfl(capsys, "pretrain", str(config), f"pretrain.shards=[{first[0]}, {tmp_path / 'b'}]",
                           "--dry-run")
    assert code == 0, err
    assert "160 image samples from 3 shards" in out and "2 epochs x 2 steps = 4 steps" in out


def test_slurm_dry_run_asks_for_one_task_per_rank(capsys, digits_run):
    _, config = digits_run
    code, out, err = gptfl(capsys, "pretrain", str(config), "pretrain.ranks=4", "launcher.slurm.nodes=2",
                           "--executor", "slurm", "--dry-run")
    assert code == 0, err
    assert "4 ranks as 2 node(s) x 2 task(s)" in out
    assert "#SBATCH --nodes=2" in out and "#SBATCH --ntasks-per-node=2" in out and "#SBATCH --requeue" in out
    code, _, err = gptfl(capsys, "pretrain", str(config), "pretrain.ranks=3", "launcher.slurm.nodes=2",
                         "--executor", "slurm")
    assert_one_line_error(code, err, "pretrain.ranks 3 does not split evenly over launcher.slurm.nodes 2")


def test_quickstart_config_has_a_small_pretrain_section(quickstart_config):
    from gptfl_hpc.config import load_config

    settings = load_config(quickstart_config).pretrain
    assert settings.shards is None and settings.ranks == 1 and settings.epochs <= 5 and settings.zero_stage == 2


def test_real_test_split_of_another_kind_is_one_line(capsys, tmp_path):
    run_dir = tmp_path / "run"
    write_audio_shard(run_dir / "synth")
    config = write_config(tmp_path / "config.yaml", run_dir)
    code, _, err = gptfl(capsys, "pretrain", str(config), "model.name=audio_crnn", "pretrain.micro_batch_size=2")
    assert_one_line_error(code, err, "the test split of digits holds image but the shards hold audio",
                          "pretrain.evaluate false")


def test_local_executor_runs_one_task_per_rank(capsys, tmp_path):
    """submitit's local executor: two tasks, each joining the world as one rank."""
    run_dir = tmp_path / "run"
    write_digit_shards(run_dir / "synth", limit=128)
    config = write_config(tmp_path / "config.yaml", run_dir, launcher={"executor": "local", "poll_interval_s": 0.2})
    code, out, err = gptfl(capsys, "pretrain", str(config), "pretrain.epochs=1")
    assert code == 0, err
    summary = json.loads(out[out.index("{"):])
    assert summary["ranks"] == 2 and summary["steps"] == 2
    job_id = re.search(r"local job (\S+),", out).group(1)
    logs = run_dir / "logs" / "pretrain"
    assert (logs / f"{job_id}_0_log.out").is_file() and (logs / f"{job_id}_1_log.out").is_file()
    code, out, _ = gptfl(capsys, "pretrain", str(config), "pretrain.epochs=1")
    assert code == 0 and "already complete" in out
