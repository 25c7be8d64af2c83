"""Experiment tracking with the real libraries: TensorBoard event files, an MLflow SQLite store and
W&B offline runs, each read back with the library's own readers (W&B's run file through its own
protobuf records) and compared with ``metrics.jsonl``; a SIGKILLed and resumed federation logs every
round once; a tracker that cannot write warns once; outputs are the untracked run's bytes.

One module fixture federates GPT-FL and FL from scratch for 3 rounds with all three backends and
the same pair untracked; the other tests add a pretraining, a killed run and a 2-point sweep.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fixtures_shards import pretrain_settings, write_config, write_digit_shards
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_fl_federation import assert_same_outputs, config, metrics, run_killed_then_resumed, write_pretrained

from gptfl_hpc import cli
from gptfl_hpc.config import load_config
from gptfl_hpc.fl import stage
from gptfl_hpc.pretrain.metrics import read_metrics

ALL = "tracking.backends=[tensorboard,mlflow,wandb]"
FEDERATIONS = ("federate", "federate-scratch")


def federate_both(run_dir: Path, *extra: str) -> None:
    write_pretrained(run_dir)
    stage.run(config(run_dir, "federate.rounds=3", *extra))
    stage.run_baseline(config(run_dir, "federate.rounds=3", *extra))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    tracked, untracked = tmp_path_factory.mktemp("tracked"), tmp_path_factory.mktemp("untracked")
    federate_both(tracked, ALL)
    federate_both(untracked)
    return tracked, untracked


# --------------------------------------------------------------------------- readers


def tensorboard_scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def wandb_history(run_dir: Path, stage_name: str) -> list[tuple[int, dict]]:
    """Every history row of a stage's offline W&B runs, read with W&B's own record type."""
    from gptfl_hpc.tracking.wandb_backend import offline_history

    record = json.loads((run_dir / "tracking" / f"{stage_name}.json").read_text())["backends"]["wandb"]
    return offline_history(Path(record["dir"]), record["id"])


def mlflow_client(run_dir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{run_dir / 'tracking' / 'mlflow.db'}")


def assert_series(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """The same steps in the same order, each with its value (TensorBoard keeps float32)."""
    assert [step for step, _ in got] == [step for step, _ in expected]
    assert [value for _, value in got] == pytest.approx([value for _, value in expected], rel=1e-6)


def evaluated(out_dir: Path, key: str = "test_accuracy") -> list[tuple[int, float]]:
    return [(r["round"], r[key]) for r in metrics(out_dir) if key in r]


# --------------------------------------------------------------------------- the three backends


def test_outputs_are_the_untracked_runs_bytes(runs):
    tracked, untracked = runs
    for folder in FEDERATIONS:
        assert_same_outputs(untracked / folder, tracked / folder)
    assert not (untracked / "tracking").exists()


def test_tensorboard_holds_one_accuracy_per_round_for_gpt_fl_and_scratch(runs):
    tracked, _ = runs
    for folder in FEDERATIONS:
        scalars = tensorboard_scalars(tracked / "tracking" / "tensorboard" / tracked.name / folder, "test_accuracy")
        assert [step for step, _ in scalars] == [0, 1, 2, 3]
        assert_series(scalars, evaluated(tracked / folder))
        diversity = tensorboard_scalars(tracked / "tracking" / "tensorboard" / tracked.name / folder, "gradient_diversity")
        assert_series(diversity, evaluated(tracked / folder, "gradient_diversity"))


def test_mlflow_holds_the_group_its_config_and_the_round_histories(runs):
    tracked, _ = runs
    client = mlflow_client(tracked)
    experiment = client.get_experiment_by_name(tracked.name)
    found = client.search_runs([experiment.experiment_id])
    groups = [r for r in found if r.data.tags.get("gptfl.kind") == "group"]
    assert [g.info.run_name for g in groups] == [tracked.name]
    children = {r.info.run_name: r for r in found if r.data.tags.get("mlflow.parentRunId") == groups[0].info.run_id}
    assert set(children) == set(FEDERATIONS)
    run_config = config(tracked, "federate.rounds=3")
    for run in [groups[0], *children.values()]:
        assert run.data.params["config_hash"] == run_config.hash
        assert run.data.params["federate.rounds"] == "3"
        assert run.data.params["model.width"] == "8"
    for folder, run in children.items():
        history = client.get_metric_history(run.info.run_id, "test_accuracy")
        assert_series(sorted((m.step, m.value) for m in history), evaluated(tracked / folder))


def test_wandb_offline_history_matches_the_metrics(runs):
    tracked, _ = runs
    for folder in FEDERATIONS:
        rows = wandb_history(tracked, folder)
        assert_series([(step, row["test_accuracy"]) for step, row in rows], evaluated(tracked / folder))


def test_status_says_where_the_tracking_lives(runs, capsys):
    tracked, _ = runs
    assert cli.main(["status", str(tracked)]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {tracked / 'tracking' / 'tensorboard'}" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{tracked / 'tracking' / 'mlflow.db'}" in out
    assert f"wandb sync {tracked / 'tracking' / 'wandb'}/offline-run-" in out


# --------------------------------------------------------------------------- resume, failure, pretraining, sweeps


def test_sigkilled_federation_logs_every_round_once(runs, tmp_path):
    _, untracked = runs
    reference = tmp_path / "reference"
    write_pretrained(reference)
    stage.run(config(reference, "federate.rounds=5"))
    killed = tmp_path / "killed"
    write_pretrained(killed)
    run_killed_then_resumed(killed, ["federate.rounds=5", ALL], kill_after_round=2)
    assert_same_outputs(reference / "federate", killed / "federate")
    expected = evaluated(killed / "federate")
    assert [step for step, _ in expected] == [0, 1, 2, 3, 4, 5]
    scalars = tensorboard_scalars(killed / "tracking" / "tensorboard" / killed.name / "federate", "test_accuracy")
    assert_series(scalars, expected)
    client = mlflow_client(killed)
    run_id = json.loads((killed / "tracking" / "federate.json").read_text())["backends"]["mlflow"]["run_id"]
    assert_series(sorted((m.step, m.value) for m in client.get_metric_history(run_id, "test_accuracy")), expected)
    rows = wandb_history(killed, "federate")
    assert_series([(step, row["test_accuracy"]) for step, row in rows], expected)


def test_an_unwritable_tracker_warns_once_and_changes_nothing(runs, tmp_path, caplog):
    _, untracked = runs
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run_dir = tmp_path / "run"
    write_pretrained(run_dir)
    with caplog.at_level(logging.WARNING, logger="gptfl_hpc.tracking"):
        stage.run_baseline(config(run_dir, "federate.rounds=3", "tracking.backends=[tensorboard,mlflow]",
                                  f"tracking.tensorboard.dir={blocker / 'tb'}",
                                  f"tracking.mlflow.tracking_uri=sqlite:///{blocker / 'db' / 'mlflow.db'}"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tracking of federate-scratch" in warnings[0].getMessage()
    assert_same_outputs(untracked / "federate-scratch", run_dir / "federate-scratch")


def test_pretraining_loss_is_tracked_at_the_logged_steps(tmp_path):
    run_dir = tmp_path / "run"
    write_digit_shards(run_dir / "synth", limit=512)
    settings = pretrain_settings(ranks=1, epochs=1, log_every=4, checkpoint_every=100)
    cfg = load_config(write_config(tmp_path / "c.yaml", run_dir, settings),
                      ["tracking.backends=[tensorboard,mlflow]"])
    from gptfl_hpc.pretrain.stage import run

    run(cfg)
    logged = [(r["step"], r["loss"]) for r in read_metrics(run_dir / "pretrain" / "metrics.jsonl") if r["kind"] == "train"]
    assert len(logged) >= 3
    folder = run_dir / "tracking" / "tensorboard" / run_dir.name / "pretrain"
    assert_series(tensorboard_scalars(folder, "train/loss"), logged)
    evals = [(r["step"], r["accuracy"]) for r in read_metrics(run_dir / "pretrain" / "metrics.jsonl") if r["kind"] == "eval"]
    assert_series(tensorboard_scalars(folder, "eval/accuracy"), evals)
    run_id = json.loads((run_dir / "tracking" / "pretrain.json").read_text())["backends"]["mlflow"]["run_id"]
    history = mlflow_client(run_dir).get_metric_history(run_id, "train/loss")
    assert_series(sorted((m.step, m.value) for m in history), logged)


def test_a_sweep_is_one_experiment_with_a_group_per_point(tmp_path):
    from gptfl_hpc.sweep import load_sweep

    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"base": str(Path(__file__).resolve().parent / "configs" / "tiny-quickstart.yaml"),
                                "sweep_dir": str(tmp_path / "lr-sweep"),
                                "set": {"model.width": 8, "federate.clients_per_round": 4, "federate.rounds": 1,
                                        "federate.threads_per_rank": 1, "tracking.backends": ["mlflow"]},
                                "axes": {"federate.client.lr": [0.05, 0.1]}}))
    sweep = load_sweep(grid)
    for point in sweep.points:
        stage.run_baseline(point.config)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'lr-sweep' / 'tracking' / 'mlflow.db'}")
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == ["lr-sweep"]
    groups = [r for r in client.search_runs([experiments[0].experiment_id] if experiments[0].name == "lr-sweep"
                                            else [e.experiment_id for e in experiments if e.name == "lr-sweep"])
              if r.data.tags.get("gptfl.kind") == "group"]
    assert sorted(g.info.run_name for g in groups) == sorted(p.name for p in sweep.points)
    assert sorted(g.data.tags["axis.federate.client.lr"] for g in groups) == ["0.05", "0.1"]


def test_the_cli_and_the_stages_load_no_tracking_library_without_tracking():
    import subprocess
    import sys

    code = ("import sys; import gptfl_hpc.cli, gptfl_hpc.fl.simulator, gptfl_hpc.pretrain.train, gptfl_hpc.report; "
            "print(sorted(m for m in ('tensorboard', 'wandb', 'mlflow', 'torch.utils.tensorboard') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
