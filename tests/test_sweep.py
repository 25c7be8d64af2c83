"""`gptfl sweep`: grids expanded into points, upstream stages shared, combined tables and plots.

The integration test runs a real 2 seeds x 2 sampling rates sweep of the quickstart (tiny sizes,
inline executor) and recomputes every table number from the runs' own metrics.jsonl; the
communication-to-target numbers are also checked against hand-written metrics. The Slurm path is
covered by --dry-run output (no job is submitted).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gptfl_hpc.cli import main as gptfl_main
from gptfl_hpc.orchestrate.sweep import prepare_sweep
from gptfl_hpc.config import load_config
from gptfl_hpc.report import Curve, smoothed
from gptfl_hpc.report_tables import federation_row, latex_table, markdown_table
from gptfl_hpc.rundir import prepare_run_dir
from gptfl_hpc.sweep import load_sweep, read_record
from gptfl_hpc.sweep_report import make_sweep_report, mean_series

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Small enough that the whole sweep (two syntheses and pretrainings, eight federations) takes
#: about half a minute on two cores.
TINY = {
    "synth.count": 40,
    "synth.samples_per_shard": 20,
    "synth.model.steps": 2,
    "pretrain.epochs": 1,
    "model.width": 8,
    "federate.rounds": 3,
    "federate.threads_per_rank": 1,
}
SEEDS, RATES = (0, 1), (3, 5)
METHODS = (("GPT-FL", "federate"), ("FL from scratch", "federate-scratch"))


def write_grid(path: Path, axes: dict, **extra) -> Path:
    grid = {"base": str(QUICKSTART), "sweep_dir": str(path.parent / "sweep"), "set": dict(TINY), "axes": axes, **extra}
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def gptfl(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "gptfl_hpc", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"gptfl {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def evaluated(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if "test_accuracy" in row]


def shard_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every synthesized shard file under ``folder`` (links not followed), by real path: (inode, mtime)."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name.startswith("shard-") and name.endswith(".h5"):
                stat = os.stat(os.path.join(root, name))
                found[os.path.realpath(os.path.join(root, name))] = (stat.st_ino, stat.st_mtime_ns)
    return found


# --------------------------------------------------------------------------- the quickstart sweep


@pytest.fixture(scope="module")
def quickstart_sweep(tmp_path_factory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("sweep")
    grid = write_grid(folder / "grid.yaml", {"seed": list(SEEDS), "federate.clients_per_round": list(RATES)})
    out = gptfl("sweep", grid, "--executor", "inline").stdout
    return grid, folder / "sweep", out


def point_dir(sweep: Path, seed: int, rate: int) -> Path:
    return sweep / f"seed={seed},clients_per_round={rate}"


def test_sweep_runs_every_point_and_shares_upstream_stages(quickstart_sweep):
    grid, sweep, out = quickstart_sweep
    for seed in SEEDS:
        for rate in RATES:
            run = point_dir(sweep, seed, rate)
            assert all((run / folder / "summary.json").is_file() for _, folder in METHODS)
            assert load_config(run / "config.yaml").federate.clients_per_round == rate
            assert f"] seed={seed},clients_per_round={rate} done" in out
    # Synthesis depends on the seed, not on the sampling rate: one synthesis (2 shards of 20) per seed.
    shards = shard_files(sweep)
    assert len(shards) == len(SEEDS) * 2
    pretrained = sorted(sweep.glob("shared/pretrain-*/pretrain/done.json"))
    assert len(pretrained) == len(SEEDS)
    assert len(list(sweep.glob("shared/synth-*/synth/plan.json"))) == len(SEEDS)
    for seed in SEEDS:
        one, other = (point_dir(sweep, seed, rate) for rate in RATES)
        for name in ("synth", "prompts.json", "pretrain/model.safetensors"):
            assert (one / name).is_symlink() and (one / name).resolve() == (other / name).resolve()
        assert (one / "synth").resolve() != (point_dir(sweep, 1 - seed, RATES[0]) / "synth").resolve()
    # Each point federated from its seed's shared model, and GPT-FL's round 0 is that model.
    for seed in SEEDS:
        round0 = {evaluated(point_dir(sweep, seed, rate) / "federate" / "metrics.jsonl")[0]["test_accuracy"]
                  for rate in RATES}
        assert len(round0) == 1
    record = read_record(sweep)
    assert [p["name"] for p in record["points"]] == [f"seed={s},clients_per_round={r}" for s in SEEDS for r in RATES]


def test_combined_table_equals_the_runs_metrics(quickstart_sweep):
    _, sweep, _ = quickstart_sweep
    table = json.loads((sweep / "report" / "table.json").read_text())
    rows = {(row["setting"]["federate.clients_per_round"], row["method"]): row for row in table["rows"]}
    markdown = (sweep / "report" / "report.md").read_text()
    latex = (sweep / "report" / "table.tex").read_text()
    for rate in RATES:
        runs = {method: [evaluated(point_dir(sweep, seed, rate) / folder / "metrics.jsonl") for seed in SEEDS]
                for method, folder in METHODS}
        # The report's default target: 90% of the lowest best accuracy among the setting's runs.
        target = round(0.9 * min(max(r["test_accuracy"] for r in rows_) for m in runs for rows_ in runs[m]), 4)
        for method, _ in METHODS:
            row = rows[(str(rate), method)]
            finals = [evals[-1]["test_accuracy"] for evals in runs[method]]
            bests = [max(r["test_accuracy"] for r in evals) for evals in runs[method]]
            hits = [next((r for r in evals if r["test_accuracy"] >= target), None) for evals in runs[method]]
            hits = [hit for hit in hits if hit is not None]
            assert row["runs"] == 2 and row["target_accuracy"] == target
            assert row["final_accuracy"]["values"] == finals and row["best_accuracy"]["values"] == bests
            assert math.isclose(row["final_accuracy"]["mean"], statistics.mean(finals))
            assert math.isclose(row["final_accuracy"]["std"], statistics.stdev(finals))
            assert math.isclose(row["best_accuracy"]["std"], statistics.stdev(bests))
            assert row["rounds_to_target"]["values"] == [hit["round"] for hit in hits]
            assert row["params_to_target"]["values"] == [hit["params_cumulative"] for hit in hits]
            assert len(hits) == 2  # every run here passes the target: the table shows both as mean ± std
            rounds = [hit["round"] for hit in hits]
            params = [hit["params_cumulative"] for hit in hits]
            cells = [str(rate), method, "2",
                     f"{100 * statistics.mean(finals):.2f} ± {100 * statistics.stdev(finals):.2f}",
                     f"{100 * statistics.mean(bests):.2f} ± {100 * statistics.stdev(bests):.2f}",
                     f"{100 * target:.2f}",
                     f"{statistics.mean(rounds):.1f} ± {statistics.stdev(rounds):.1f}",
                     f"{statistics.mean(params):,.0f} ± {statistics.stdev(params):,.0f}"]
            assert "| " + " | ".join(cells) + " |" in markdown
            assert " & ".join(cells).replace(" ± ", r" $\pm$ ") + r" \\" in latex
        synthetic = rows[(str(rate), "synthetic data only")]
        assert synthetic["final_accuracy"]["values"] == [evals[0]["test_accuracy"] for evals in runs["GPT-FL"]]
    plots = sorted((sweep / "report").glob("*.png"))
    assert {p.name for p in plots} == {"accuracy_vs_sampling_rate.png", "accuracy_per_round.png",
                                       "gradient_diversity.png"}
    assert all(p.read_bytes()[:8] == PNG_MAGIC and f"]({p.name})" in markdown for p in plots)


def test_sweep_status_report_and_resume(quickstart_sweep):
    grid, sweep, _ = quickstart_sweep
    status = json.loads(gptfl("status", sweep, "--json").stdout)
    assert len(status["shared"]) == 4 and len(status["points"]) == 4
    states = [info["state"] for run in [*status["shared"].values(), *status["points"].values()]
              for info in run["stages"].values()]
    assert states and set(states) == {"done"} and status["report"]["state"] == "done"
    assert "4/4 points done" in gptfl("status", sweep).stdout
    # A point is a whole run: its own status reads its shared stages through the links.
    point = json.loads(gptfl("status", point_dir(sweep, 0, 3), "--json").stdout)
    assert {stage: info["state"] for stage, info in point.items()} == dict.fromkeys(point, "done")

    written = json.loads(gptfl("report", sweep, "--smooth", "2").stdout)
    assert written["points_with_results"] == 4
    assert "trailing mean over 2 rounds" in (sweep / "report" / "report.md").read_text()

    before = shard_files(sweep)
    again = gptfl("sweep", grid, "--executor", "inline").stdout
    for stage in ("prompts", "synth", "pretrain"):
        assert again.count(f"run: {stage} already done, skipped") == len(SEEDS)
    for stage in ("federate", "federate-scratch"):
        assert again.count(f"run: {stage} already done, skipped") == len(SEEDS) * len(RATES)
    assert shard_files(sweep) == before  # no shard made again, none rewritten


def test_a_failed_point_leaves_the_others_and_the_report(tmp_path):
    # 20 clients per round out of 10 is refused by the federate stage; the other point goes on.
    grid = write_grid(tmp_path / "grid.yaml", {"federate.clients_per_round": [20, 4]},
                      set={**TINY, "federate.rounds": 2, "federate.baseline": False})
    proc = gptfl("sweep", grid, "--executor", "inline", check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "[1/2] clients_per_round=20 failed: federate.clients_per_round 20 exceeds the 10 clients" in proc.stdout
    assert "[2/2] clients_per_round=4 done" in proc.stdout
    table = json.loads((tmp_path / "sweep" / "report" / "table.json").read_text())
    assert {(row["setting"]["federate.clients_per_round"], row["method"]) for row in table["rows"]} == {
        ("4", "synthetic data only"), ("4", "GPT-FL")}


# --------------------------------------------------------------------------- Slurm: --dry-run only


def test_slurm_dry_run_prints_one_chain_per_point_and_writes_nothing(tmp_path, capsys):
    grid = write_grid(tmp_path / "grid.yaml", {"seed": [0, 1], "federate.clients_per_round": [3, 5]})
    assert gptfl_main(["sweep", str(grid), "launcher.slurm.partition=debug", "--executor", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # Per seed: prompts, the synthesis array and pretraining; per point: federate and its baseline.
    assert out.count("#!/bin/bash") == 2 * 3 + 4 * 2
    assert out.count("#SBATCH --partition=debug") == 14
    assert out.count("run: synth: would submit 40 samples in 2 shards") == 2
    assert out.count("run: pretrain: would submit") == 2 and out.count("run: federate: would submit") == 4
    sweep = load_sweep(grid)
    for point in sweep.points:
        assert f"sweep: point {point.name}: federate after shared run {point.pretrain}" in out
        assert f"--output={point.config.run_dir}/logs/federate/" in out
    assert "sweep: nothing submitted" in out
    assert not (tmp_path / "sweep").exists()


# --------------------------------------------------------------------------- grids and their errors


def test_grid_names_points_and_shares_by_what_each_stage_reads(tmp_path):
    grid = write_grid(tmp_path / "grid.yaml", {
        "seed": [0, 1],
        "model.width": [8, 16],  # read by pretraining, not by synthesis
        "data.partition.alpha": [0.1, 0.5],  # read by the federations only
    })
    sweep = load_sweep(grid)
    assert len(sweep.points) == 8
    assert sweep.points[0].name == "seed=0,width=8,alpha=0.1"
    assert len(sweep.shared_runs("synth")) == 2 and len(sweep.shared_runs("pretrain")) == 4
    by_name = {point.name: point for point in sweep.points}
    assert by_name["seed=0,width=8,alpha=0.1"].pretrain == by_name["seed=0,width=8,alpha=0.5"].pretrain
    assert by_name["seed=0,width=8,alpha=0.1"].pretrain != by_name["seed=0,width=16,alpha=0.1"].pretrain
    assert by_name["seed=0,width=8,alpha=0.1"].synth == by_name["seed=0,width=16,alpha=0.5"].synth
    assert by_name["seed=0,width=8,alpha=0.1"].synth != by_name["seed=1,width=8,alpha=0.1"].synth
    point = by_name["seed=1,width=16,alpha=0.5"].config
    assert (point.seed, point.model.width, point.data.partition.alpha, point.federate.rounds) == (1, 16, 0.5, 3)
    assert point.run_dir == tmp_path / "sweep" / "seed=1,width=16,alpha=0.5"
    for run in sweep.shared.values():
        assert run.config.run_dir == tmp_path / "sweep" / "shared" / run.name
        assert run.config.federate == type(run.config.federate)()  # never read there: at its defaults
    assert {run.describe for run in sweep.shared_runs("pretrain")} == {"seed=0,width=8", "seed=0,width=16",
                                                                       "seed=1,width=8", "seed=1,width=16"}


def test_named_axis_sets_several_keys_and_its_own_base(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(QUICKSTART.read_text().replace("seed: 0", "seed: 7"))
    grid = write_grid(tmp_path / "grid.yaml", {
        "setting": {"small": {"model": {"width": 4}}, "other-base": {"base": "other.yaml", "federate.rounds": 2}},
    })
    sweep = load_sweep(grid, ["federate.eval_every=2"])
    small, moved = (point.config for point in sweep.points)
    assert [point.name for point in sweep.points] == ["setting=small", "setting=other-base"]
    assert (small.seed, small.model.width, small.federate.rounds, small.federate.eval_every) == (0, 4, 3, 2)
    assert (moved.seed, moved.model.width, moved.federate.rounds, moved.federate.eval_every) == (7, 8, 2, 2)


def test_axes_from_the_command_line(tmp_path, capsys):
    sweep_dir = tmp_path / "cli-sweep"
    assert gptfl_main(["sweep", str(QUICKSTART), "--axis", "seed=0,1", "--axis", "synth.multiplier=0.5,1.0",
                       "--sweep-dir", str(sweep_dir), "--dry-run", "--executor", "inline"]) == 0
    out = capsys.readouterr().out
    assert f"sweep: 4 points in {sweep_dir}; 4 shared synthesis and 4 shared pretrain runs" in out
    assert "sweep: point seed=1,multiplier=0.5: federate after shared run pretrain-" in out
    assert not sweep_dir.exists()


def test_sweep_refuses_a_point_directory_of_another_config(tmp_path, capsys):
    grid = write_grid(tmp_path / "grid.yaml", {"seed": [0, 1]})
    taken = tmp_path / "sweep" / "seed=1"
    prepare_run_dir(load_config(QUICKSTART, [f"run_dir={taken}", "seed=5"]))
    assert gptfl_main(["sweep", str(grid), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"run_dir {taken} was made by a different config" in err
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["seed=1"]  # nothing else written


BAD_GRIDS = [
    ({"axes": {"federate.clients_per_rond": [3, 5]}},
     "point clients_per_rond=3: config: unknown key 'federate.clients_per_rond'; "
     "did you mean 'federate.clients_per_round'?"),
    ({"axes": {"seed": []}}, "axis 'seed' has no values; list at least one"),
    ({"axes": {"seed": 3}}, "axis 'seed' must be a list of values or a mapping of named settings, not int"),
    ({"axes": {"seed": [0, 0]}}, "axis 'seed' lists 0 more than once"),
    ({"axes": {"federate.clients_per_round": [0, 5]}},
     "point clients_per_round=0: config: key 'federate.clients_per_round': input should be greater than or equal to 1"),
    ({"axes": {"run_dir": ["a", "b"]}}, "run_dir cannot be an axis"),
    ({"axes": {"launcher.poll_interval_s": [1, 2]}},
     "points poll_interval_s=1 and poll_interval_s=2 are the same run"),
    ({"axes": {"setting": {"a": "fedavg"}}}, "axis 'setting' value 'a' must map keys to values"),
    ({"axes": {}}, "no axes; add axes: to the grid"),
    ({"axis": {"seed": [0, 1]}}, "unknown key 'axis'; did you mean 'axes'?"),
    ({"base": "missing.yaml", "axes": {"seed": [0]}}, "base config"),
    ({"set": {"run_dir": "x"}, "axes": {"seed": [0]}}, "run_dir is chosen by the sweep"),
]


@pytest.mark.parametrize("change, message", BAD_GRIDS, ids=[m.split(";")[0][:40] for _, m in BAD_GRIDS])
def test_bad_grid_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, change, message):
    grid = {"base": str(QUICKSTART), "sweep_dir": str(tmp_path / "sweep"), "set": dict(TINY), **change}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert gptfl_main(["sweep", str(path), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gptfl: error: ") and message in err, err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("args, message", [
    (["--axis", "seed"], "--axis 'seed' is not KEY=V1,V2"),
    (["seed=3", "--axis", "seed=0,1"], "override 'seed=3' sets seed, which an axis"),
    (["run_dir=/tmp/x", "--axis", "seed=0"], "run_dir is chosen by the sweep"),
    ([], "is a config, not a grid: give the sweep's axes with --axis KEY=V1,V2"),
])
def test_bad_command_line_is_one_line_exit_2(tmp_path, capsys, args, message):
    code = gptfl_main(["sweep", str(QUICKSTART), *args, "--sweep-dir", str(tmp_path / "s"), "--executor", "inline"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s").exists()


def test_bad_yaml_grid(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text("base: [unclosed\n")
    assert gptfl_main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"grid file {path} is not valid YAML at line 2" in err, err


# --------------------------------------------------------------------------- tables by hand


def _metrics(accuracies: list[float], params_step: int = 100) -> str:
    rows = [{"round": r, "test_accuracy": a, "test_macro_f1": a / 2, "params_cumulative": r * params_step,
             **({"gradient_diversity": 1.0 + r} if r else {})} for r, a in enumerate(accuracies)]
    return "".join(json.dumps(row) + "\n" for row in rows)


#: Test accuracy at rounds 0..3 (parameters communicated: 100 per round) per (method, seed).
HAND = {
    ("federate", 0): [0.10, 0.50, 0.70, 0.80],
    ("federate", 1): [0.20, 0.40, 0.65, 0.90],
    ("federate-scratch", 0): [0.10, 0.30, 0.72, 0.60],
    ("federate-scratch", 1): [0.10, 0.20, 0.30, 0.50],
}


def test_communication_to_target_matches_hand_computed_values(tmp_path):
    grid = write_grid(tmp_path / "grid.yaml", {"federate.target_accuracy": [0.7, None], "seed": [0, 1]})
    sweep = load_sweep(grid)
    prepare_sweep(sweep)  # run directories, configs and links, as the sweep leaves them before any job
    for point in sweep.points:
        for folder in ("federate", "federate-scratch"):
            out = point.config.run_dir / folder
            out.mkdir()
            (out / "metrics.jsonl").write_text(_metrics(HAND[(folder, point.config.seed)]))
    make_sweep_report(sweep.sweep_dir)
    rows = {(row["setting"]["federate.target_accuracy"], row["method"]): row
            for row in json.loads((sweep.sweep_dir / "report" / "table.json").read_text())["rows"]}
    markdown = (sweep.sweep_dir / "report" / "report.md").read_text()

    # target 0.7: GPT-FL reaches it at round 2 (seed 0) and round 3 (seed 1); from scratch only seed 0, at round 2.
    gptfl_row, scratch = rows[("0.7", "GPT-FL")], rows[("0.7", "FL from scratch")]
    assert gptfl_row["rounds_to_target"]["values"] == [2, 3] and gptfl_row["params_to_target"]["values"] == [200, 300]
    assert gptfl_row["rounds_to_target"]["mean"] == 2.5
    assert math.isclose(gptfl_row["rounds_to_target"]["std"], math.sqrt(0.5))
    assert scratch["reached_target"] == 1 and scratch["params_to_target"]["values"] == [200]
    assert "| 0.7 | GPT-FL | 2 | 85.00 ± 7.07 | 85.00 ± 7.07 | 70.00 | 2.5 ± 0.7 | 250 ± 71 |" in markdown
    assert ("| 0.7 | FL from scratch | 2 | 55.00 ± 7.07 | 61.00 ± 15.56 | 70.00 | 2.0 (1/2 reached) "
            "| 200 (1/2 reached) |") in markdown
    assert "| 0.7 | synthetic data only | 2 | 15.00 ± 7.07 |" in markdown

    # No target set: 90% of the lowest best accuracy of the setting's runs, 0.9 x 0.50 = 0.45.
    gptfl_row, scratch = rows[("null", "GPT-FL")], rows[("null", "FL from scratch")]
    assert gptfl_row["target_accuracy"] == 0.45
    assert gptfl_row["rounds_to_target"]["values"] == [1, 2] and scratch["rounds_to_target"]["values"] == [2, 3]
    assert "| null | GPT-FL | 2 | 85.00 ± 7.07 | 85.00 ± 7.07 | 45.00 | 1.5 ± 0.7 | 150 ± 71 |" in markdown
    assert "| null | FL from scratch | 2 | 55.00 ± 7.07 | 61.00 ± 15.56 | 45.00 | 2.5 ± 0.7 | 250 ± 71 |" in markdown


def test_best_macro_f1_column_and_latex():
    curves = []
    for accuracies, f1 in (([0.1, 0.6, 0.5], [0.05, 0.55, 0.4]), ([0.2, 0.5, 0.7], [0.1, 0.45, 0.65])):
        curves.append(Curve("GPT-FL", rounds=[0, 1, 2], accuracy=accuracies, macro_f1=f1, params=[0, 10, 20]))
    row = federation_row((("dataset", "esc50"),), "GPT-FL", curves, 3, target=0.6)
    table = markdown_table([row], ["dataset"], with_f1=True)
    assert "best macro-F1 (%)" in table.splitlines()[0]
    # best macro-F1 per run: 0.55 and 0.65; two of three planned seeds; both reach 0.6 (rounds 1 and 2).
    assert ("| esc50 | GPT-FL | 2/3 | 60.00 ± 14.14 | 65.00 ± 7.07 | 60.00 ± 7.07 | 60.00 | 1.5 ± 0.7 "
            "| 15 ± 7 |") in table
    latex = latex_table([row], ["data_set"], with_f1=True)
    assert r"data\_set & method" in latex and r"60.00 $\pm$ 14.14" in latex and r"best macro-F1 (\%)" in latex


def test_smoothing_and_mean_over_seeds():
    assert smoothed([1.0, 2.0, 3.0, 4.0], 1) == [1.0, 2.0, 3.0, 4.0]
    assert smoothed([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert smoothed([1.0, 2.0, 3.0, 4.0], 3) == [1.0, 1.5, 2.0, 3.0]
    assert mean_series([([1, 2, 3], [1.0, 2.0, 3.0]), ([2, 3], [4.0, 5.0])]) == ([2, 3], [3.0, 4.0])
