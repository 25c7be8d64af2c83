"""``key=value`` overrides stand anywhere on a command line, before or after the flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptfl_hpc.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"


@pytest.mark.parametrize("command", ["prompts", "synth", "pretrain", "federate", "run"])
def test_overrides_after_flags_are_taken(tmp_path, capsys, command):
    before = main([command, str(QUICKSTART), f"run_dir={tmp_path / 'a'}", "seed=3", "--dry-run", "--executor", "local"])
    first = "".join(capsys.readouterr()).replace(str(tmp_path / "a"), "RUN")
    after = main([command, str(QUICKSTART), "--dry-run", f"run_dir={tmp_path / 'b'}", "--executor", "local", "seed=3"])
    second = "".join(capsys.readouterr()).replace(str(tmp_path / "b"), "RUN")
    # A stage whose inputs a fresh run lacks refuses its dry run (exit 2) the same way in both orders.
    assert before == after == (2 if command in ("pretrain", "federate") else 0)
    assert first == second and "RUN" in first  # the overrides reached the config: same run_dir, same hash
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_sweep_takes_overrides_after_flags(tmp_path, capsys):
    assert main(["sweep", str(QUICKSTART), "--axis", "seed=0,1", "--dry-run", "--sweep-dir", str(tmp_path / "s"),
                 "federate.rounds=2", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "2 points" in out and "nothing submitted" in out


def test_validate_takes_overrides_after_flags(capsys):
    assert main(["validate", str(QUICKSTART), "seed=5"]) == 0
    assert "seed: 5" in capsys.readouterr().out
