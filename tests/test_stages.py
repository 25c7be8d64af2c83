"""The stage descriptions: one done test, one job shape, one skip rule, used by every door."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_shards import write_digit_shards
from test_sweep import gptfl

from gptfl_hpc.config import load_config
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.rundir import check_run_dir, load_run, prepare_run_dir
from gptfl_hpc.orchestrate.stages import (
    BASELINE, FEDERATE, PIPELINE, PRETRAIN, SYNTH, job_shape, not_needed, stage_states,
)

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"
SMALL_FL = ["federate.rounds=2", "federate.clients_per_round=2", "federate.eval_every=1"]


def quickstart(run_dir: Path, *overrides: str):
    return load_config(QUICKSTART, [f"run_dir={run_dir}", *overrides])


# --------------------------------------------------------------------------- identity and layout


def test_federate_init_picks_the_output_not_the_run(tmp_path):
    gpt_fl, scratch = quickstart(tmp_path / "run"), quickstart(tmp_path / "run", "federate.init=scratch")
    assert gpt_fl.hash == scratch.hash
    prepare_run_dir(scratch)  # the first command of the run was the from-scratch one
    check_run_dir(gpt_fl)  # GPT-FL is still this run
    assert load_run(tmp_path / "run").federate.init == "pretrain"  # the record holds the default
    assert scratch.layout.federation(scratch.federate.init) == tmp_path / "run" / "federate-scratch"
    assert gpt_fl.layout.federation(gpt_fl.federate.init) == tmp_path / "run" / "federate"


def test_the_layout_names_every_folder_once():
    layout = RunLayout(Path("/r"))
    assert layout.pretrained_model == Path("/r/pretrain/model.safetensors")
    assert layout.logs("synth") == Path("/r/logs/synth") and layout.logs() == Path("/r/logs")
    assert {stage.output(layout) for stage in PIPELINE} == {
        Path("/r/prompts.json"), Path("/r/synth"), Path("/r/pretrain/model.safetensors"), Path("/r/federate"),
        Path("/r/federate-scratch"), Path("/r/report/report.md")}


# --------------------------------------------------------------------------- job shape


@pytest.mark.parametrize(
    "executor, ranks, nodes, shape",
    [("inline", 2, 1, (None, None)), ("debug", 2, 1, (None, None)), ("local", 1, 1, (1, 1)),
     ("local", 2, 1, (1, 2)), ("slurm", 1, 2, (1, 1)), ("slurm", 4, 2, (2, 2)), ("slurm", 2, 2, (2, 1))],
)
def test_one_job_shape_rule_for_every_multi_rank_stage(tmp_path, executor, ranks, nodes, shape):
    config = quickstart(tmp_path, f"launcher.executor={executor}", f"launcher.slurm.nodes={nodes}",
                        f"pretrain.ranks={ranks}", f"federate.ranks={ranks}")
    assert job_shape(PRETRAIN, config) == job_shape(FEDERATE, config) == job_shape(BASELINE, config) == shape
    assert job_shape(SYNTH, config) == (None, None)  # an array: one task per plan task


# --------------------------------------------------------------------------- skip rules


def test_stages_no_later_stage_reads_are_not_needed(tmp_path):
    assert not_needed(quickstart(tmp_path)) == {}
    shards = not_needed(quickstart(tmp_path, f"pretrain.shards=[{tmp_path}]"))
    assert set(shards) == {"prompts", "synth"} and "pretrain.shards" in shards["synth"]
    init_path = not_needed(quickstart(tmp_path, f"federate.init_path={tmp_path / 'm.safetensors'}"))
    assert set(init_path) == {"prompts", "synth", "pretrain"}
    scratch = not_needed(quickstart(tmp_path, "federate.init=scratch"))
    assert set(scratch) == {"prompts", "synth", "pretrain", "federate"}
    assert set(not_needed(quickstart(tmp_path, "federate.baseline=false"))) == {"federate-scratch"}


def test_status_and_run_share_one_done_test(tmp_path):
    config = quickstart(tmp_path / "run")
    prepare_run_dir(config)
    layout = config.layout
    layout.pretrain.mkdir()
    layout.pretrained_model.write_bytes(b"not finished: no done.json beside it")
    federate = layout.federation("pretrain")
    federate.mkdir()
    (federate / "summary.json").write_text("{}")  # a summary without its model is not done either
    states = stage_states(config)
    assert states["pretrain"]["state"] == "partial" and not PRETRAIN.is_done(config)
    assert states["federate"]["state"] == "partial" and not FEDERATE.is_done(config)
    status = json.loads(gptfl("status", layout.root, "--json").stdout)
    assert status["pretrain"]["state"] == "partial" and status["federate"]["state"] == "partial"


def test_status_and_run_with_external_shards_skip_prompts_and_synthesis(tmp_path):
    shards = tmp_path / "shards"
    write_digit_shards(shards, limit=64)
    run_dir = tmp_path / "run"
    overrides = [f"run_dir={run_dir}", f"pretrain.shards=[{shards}]", "pretrain.epochs=1"]
    planned = gptfl("run", QUICKSTART, *overrides, "--dry-run", "--executor", "slurm").stdout
    assert "run: prompts not needed: pretraining reads pretrain.shards" in planned
    assert "run: synth not needed" in planned and "synth: would submit" not in planned
    assert "run: pretrain: would submit" in planned and "64 image samples" not in planned
    gptfl("pretrain", QUICKSTART, *overrides, "--executor", "inline")
    status = gptfl("status", run_dir).stdout
    assert "prompts          not needed (pretraining reads pretrain.shards)" in status
    assert "synth            not needed" in status and "pretrain         done" in status
    assert not (run_dir / "synth").exists() and not (run_dir / "prompts.json").exists()


# --------------------------------------------------------------------------- commands


def test_gpt_fl_and_fl_from_scratch_share_one_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [f"run_dir={run_dir}", *SMALL_FL]
    scratch = gptfl("federate", QUICKSTART, *overrides, "federate.init=scratch", "--executor", "inline")
    assert "federate-scratch: inline job" in scratch.stdout
    summary = json.loads((run_dir / "federate-scratch" / "summary.json").read_text())
    assert summary["rounds"] == 2 and not (run_dir / "federate").exists()
    # GPT-FL in the same run_dir is the same run: refused only for its missing pretrained model.
    gpt_fl = gptfl("federate", QUICKSTART, *overrides, "--executor", "inline", check=False)
    assert gpt_fl.returncode == 2 and "run `gptfl pretrain` first" in gpt_fl.stderr
    assert "different config" not in gpt_fl.stderr
    again = gptfl("federate", QUICKSTART, *overrides, "federate.init=scratch", "--executor", "inline")
    assert "federate-scratch already done, skipped" in again.stdout


def test_run_checks_every_stage_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    proc = gptfl("run", QUICKSTART, f"run_dir={run_dir}", "federate.clients_per_round=50", "--executor", "inline",
                 check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "clients_per_round 50 exceeds the 10 clients" in lines[0]
    assert not run_dir.exists()  # prompts and synthesis never started


def test_run_checks_the_clusters_max_array_size(tmp_path):
    run_dir = tmp_path / "run"
    proc = gptfl("run", QUICKSTART, f"run_dir={run_dir}", "synth.samples_per_shard=1", "synth.tasks=100000",
                 "--executor", "slurm", check=False)
    assert proc.returncode == 2 and "MaxArraySize" in proc.stderr and "lower synth.tasks" in proc.stderr
    assert not run_dir.exists()


def test_launcher_stage_keys_are_the_stage_names():
    from gptfl_hpc.config import STAGE_NAMES

    assert STAGE_NAMES == tuple(stage.name for stage in PIPELINE)  # launcher.stages.<name> per-stage settings


def test_fl_from_scratch_takes_the_federate_launcher_settings_under_its_own(tmp_path):
    config = quickstart(tmp_path, "launcher.stages={federate: {nodes: 2, qos: high}, federate-scratch: {qos: low}}")
    scratch = config.launcher.for_stage(BASELINE.name).slurm
    assert (scratch.nodes, scratch.qos) == (2, "low")
    assert config.launcher.for_stage("pretrain").slurm.nodes == 1
