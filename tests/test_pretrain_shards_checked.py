"""Pretraining checks every shard against its record before use: a damaged, truncated or missing
shard is refused in one line (nothing written), `gptfl synth` remakes it, and `gptfl run` remakes
it before pretraining."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures_shards import tiny_run_yaml

from gptfl_hpc.cli import main
from gptfl_hpc.errors import UserError
from gptfl_hpc.shards.manifest import sha256_file
from gptfl_hpc.shards.reader import ShardDataset
from gptfl_hpc.shards.writer import PartialShard, read_arrays

LABELS = ["digit zero", "digit one", "digit two"]



def write_config(path: Path, run_dir: Path, extra: str = "") -> Path:
    path.write_text(tiny_run_yaml(run_dir) + extra)
    return path


def gptfl(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gptfl: error: "), err
    return lines[0]


def shard_hashes(synth_dir: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(synth_dir.glob("shard-*.h5"))}


def files_under(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*")}


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5000])


DAMAGE = {
    "flipped byte": (flip_a_byte, "sha256 differs from its record"),
    "truncated": (truncate, "sha256 differs from its record"),
    "deleted": (Path.unlink, "missing (0/12 samples)"),
}


@pytest.fixture(scope="module")
def made_run(tmp_path_factory) -> Path:
    """A run with prompts and three verified shards, made once and copied by each test."""
    tmp = tmp_path_factory.mktemp("made")
    config = write_config(tmp / "config.yaml", tmp / "run")
    assert main(["prompts", str(config)]) == 0 and main(["synth", str(config)]) == 0
    assert len(shard_hashes(tmp / "run" / "synth")) == 3
    return tmp / "run"


@pytest.fixture
def run(tmp_path, made_run) -> tuple[Path, Path]:
    run_dir = tmp_path / "run"
    shutil.copytree(made_run, run_dir)
    return run_dir, write_config(tmp_path / "config.yaml", run_dir)


@pytest.mark.parametrize("damage", DAMAGE)
def test_pretrain_refuses_a_damaged_shard_and_writes_nothing(capsys, run, damage):
    run_dir, config = run
    spoil, problem = DAMAGE[damage]
    spoil(run_dir / "synth" / "shard-00001.h5")
    before = files_under(run_dir)
    line = one_error_line(*gptfl(capsys, "pretrain", config)[::2])
    assert f"shard {run_dir / 'synth' / 'shard-00001.h5'} is not usable: {problem}" in line
    assert "`gptfl synth CONFIG` remakes it" in line and f"`gptfl synth verify {run_dir}`" in line
    assert "more shard" not in line  # shards 0 and 2 are good
    assert files_under(run_dir) == before and not (run_dir / "pretrain").exists()


def test_after_gptfl_synth_remakes_the_shards_pretrain_runs(capsys, run, made_run):
    run_dir, config = run
    flip_a_byte(run_dir / "synth" / "shard-00000.h5")
    truncate(run_dir / "synth" / "shard-00002.h5")
    line = one_error_line(*gptfl(capsys, "pretrain", config)[::2])
    assert "shard-00000.h5 is not usable" in line and "(and 1 more shard(s) not good)" in line
    assert "remakes them" in line
    code, _, err = gptfl(capsys, "synth", config)
    assert code == 0, err
    assert shard_hashes(run_dir / "synth") == shard_hashes(made_run / "synth")
    code, out, err = gptfl(capsys, "pretrain", config)
    assert code == 0, err
    assert "36 image samples from 3 shards" in out and (run_dir / "pretrain" / "model.safetensors").is_file()


def test_gptfl_run_remakes_a_damaged_shard_then_pretrains(capsys, run, made_run):
    run_dir, config = run
    flip_a_byte(run_dir / "synth" / "shard-00001.h5")
    code, out, err = gptfl(capsys, "run", config)
    assert code == 0, err
    assert "run: prompts already done, skipped" in out and "run: synth: inline job" in out
    assert shard_hashes(run_dir / "synth") == shard_hashes(made_run / "synth")
    assert (run_dir / "synth" / "bad" / "shard-00001.h5").is_file()  # the damaged one, kept aside
    assert (run_dir / "pretrain" / "model.safetensors").is_file() and (run_dir / "federate").is_dir()


def test_a_synthesis_stopped_mid_shard_is_refused_not_trained_on_fewer_samples(capsys, run):
    run_dir, config = run
    synth = run_dir / "synth"
    arrays = read_arrays(synth / "shard-00002.h5")
    (synth / "shard-00002.h5").unlink()
    (synth / "shard-00002.json").unlink()
    PartialShard(synth, 2, 24, 36).commit({key: value[:4] for key, value in arrays.items()})
    line = one_error_line(*gptfl(capsys, "pretrain", config)[::2])
    assert "shard-00002.h5 is not usable: partial (4/12 samples)" in line
    assert not (run_dir / "pretrain").exists()


def test_another_runs_synthesis_folder_is_checked_too(capsys, tmp_path, made_run):
    external = tmp_path / "external"
    shutil.copytree(made_run / "synth", external)
    truncate(external / "shard-00002.h5")
    config = write_config(tmp_path / "config.yaml", tmp_path / "run")
    line = one_error_line(*gptfl(capsys, "pretrain", config, f"pretrain.shards=[{external}]")[::2])
    assert f"shard {external / 'shard-00002.h5'} is not usable: sha256 differs" in line
    assert "leave it out of pretrain.shards" in line
    assert not (tmp_path / "run").exists()


def test_external_shards_with_records_are_checked_and_plain_ones_accepted(capsys, tmp_path, made_run):
    # Shards and their records without plan.json or manifest.json: each record is checked.
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in (made_run / "synth").glob("shard-*"):
        shutil.copy(path, loose / path.name)
    config = write_config(tmp_path / "config.yaml", tmp_path / "run")
    code, out, err = gptfl(capsys, "pretrain", config, f"pretrain.shards=[{loose}]", "--dry-run")
    assert code == 0 and "36 image samples from 3 shards" in out, err
    flip_a_byte(loose / "shard-00001.h5")
    for source in (loose, loose / "shard-00001.h5"):
        line = one_error_line(*gptfl(capsys, "pretrain", config, f"pretrain.shards=[{source}]", "--dry-run")[::2])
        assert f"shard {loose / 'shard-00001.h5'} is not usable: sha256 differs" in line
    # Without records nothing can be checked: complete shards are read as they are.
    for record in loose.glob("shard-*.json"):
        record.unlink()
    code, out, err = gptfl(capsys, "pretrain", config, f"pretrain.shards=[{loose}]", "--dry-run")
    assert code == 0 and "36 image samples from 3 shards" in out, err


def test_shard_dataset_over_a_folder_checks_it(made_run, tmp_path):
    synth = tmp_path / "synth"
    shutil.copytree(made_run / "synth", synth)
    assert len(ShardDataset(synth, LABELS)) == 36
    truncate(synth / "shard-00000.h5")
    with pytest.raises(UserError, match="shard-00000.h5 is not usable: sha256 differs"):
        ShardDataset(synth, LABELS)
