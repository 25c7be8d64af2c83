"""``RUN/report/``: the header's client count, the automatic target accuracy and the methods that
never reach it, from federations' metrics written as the simulator writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from gptfl_hpc.config import load_config
from gptfl_hpc.report import Curve, make_report, target_accuracy
from gptfl_hpc.report_tables import federation_row, markdown_table

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"
PARAMS_PER_ROUND = 1000


def write_federation(folder: Path, accuracies: list[float], clients: int = 10,
                     client_accuracy: Optional[list[dict]] = None) -> None:
    """``metrics.jsonl`` (one evaluated row per round from 0) and ``summary.json`` as a federation leaves
    them; ``client_accuracy``: the per-client list of ``federate.client_eval``."""
    folder.mkdir(parents=True)
    rows = [{"round": r, "test_accuracy": a, "test_macro_f1": a, "params_cumulative": r * PARAMS_PER_ROUND}
            for r, a in enumerate(accuracies)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = {"rounds": len(accuracies) - 1, "clients": clients}
    if client_accuracy is not None:
        summary.update(client_eval_round=len(accuracies) - 1, client_accuracy=client_accuracy)
    (folder / "summary.json").write_text(json.dumps(summary))


def quickstart_run(tmp_path: Path, *overrides: str):
    return load_config(QUICKSTART, [f"run_dir={tmp_path / 'run'}", *overrides])


def speech_run(tmp_path: Path):
    """A speech run whose partition has one client per speaker: no client count in the config."""
    return quickstart_run(tmp_path, "data.dataset=speech_commands", f"data.root={tmp_path}", "data.partition.kind=speaker",
                          "data.partition.num_clients=null", "synth.model.kind=speecht5", "synth.model.weights=tiny",
                          "labels.names=[up,down,left,right,stop,go,cat,dog,bed,bird]", "model.name=resnet18")


def test_header_counts_the_clients_the_federation_had_when_the_config_leaves_it_open(tmp_path):
    config = speech_run(tmp_path)
    write_federation(config.layout.federation("pretrain"), [0.3, 0.5, 0.6], clients=16)
    write_federation(config.layout.federation("scratch"), [0.1, 0.2, 0.4], clients=16)
    make_report(config)
    report = config.layout.report_file.read_text()
    assert "16 clients (speaker)" in report and "None clients" not in report


def test_header_uses_the_configured_client_count(tmp_path):
    config = quickstart_run(tmp_path)
    write_federation(config.layout.federation("pretrain"), [0.3, 0.5, 0.6], clients=99)
    make_report(config)
    assert "10 clients (dirichlet, alpha 0.5)" in config.layout.report_file.read_text()


def test_automatic_target_is_never_at_or_below_chance(tmp_path):
    config = speech_run(tmp_path)  # 10 classes: chance is 0.1
    learned = Curve("GPT-FL", [0, 1, 2], [0.2, 0.5, 0.8], [0.2, 0.5, 0.8], [0, 1000, 2000])
    stuck = Curve("FL from scratch", [0, 1, 2], [0.09, 0.1, 0.1], [0.0] * 3, [0, 1000, 2000])
    # 90% of the lower best (0.1) would be 0.09, reached by an untrained model at round 0.
    assert target_accuracy(config, [learned, stuck], 10) == pytest.approx(0.72)
    # Both learned: 90% of the lower best, as before.
    assert target_accuracy(config, [learned, Curve("s", [0, 1], [0.1, 0.6], [0, 0], [0, 1])], 10) == pytest.approx(0.54)
    # Neither above chance: no target at all.
    assert target_accuracy(config, [stuck], 10) is None
    # A configured target is taken as given.
    assert target_accuracy(quickstart_run(tmp_path, "federate.target_accuracy=0.05"), [stuck], 10) == 0.05


def test_a_method_that_never_reaches_the_target_is_reported_as_such(tmp_path):
    config = speech_run(tmp_path)
    write_federation(config.layout.federation("pretrain"), [0.2, 0.5, 0.8, 0.85], clients=16)
    write_federation(config.layout.federation("scratch"), [0.09, 0.1, 0.1, 0.1], clients=16)
    written = make_report(config)
    report = config.layout.report_file.read_text()
    assert written["target_accuracy"] == pytest.approx(0.765)
    scratch_row = next(line for line in report.splitlines() if line.startswith("| FL from scratch |"))
    assert scratch_row.endswith("| not reached in 3 rounds | not reached in 3 rounds |")
    gptfl_row = next(line for line in report.splitlines() if line.startswith("| GPT-FL |"))
    assert gptfl_row.endswith("| 2 | 2,000 |")
    assert ("GPT-FL reaches 76.5% after 2,000 parameters communicated; FL from scratch has not reached it in 3 rounds "
            "(3,000 parameters).") in report
    assert (config.layout.report / "communication_to_target.png").is_file()


def test_both_reaching_the_target_gives_the_communication_ratio(tmp_path):
    config = quickstart_run(tmp_path)
    write_federation(config.layout.federation("pretrain"), [0.5, 0.8, 0.9, 0.9])
    write_federation(config.layout.federation("scratch"), [0.1, 0.3, 0.6, 0.9])
    make_report(config)
    report = config.layout.report_file.read_text()
    # Target 0.81 (90% of 0.9): GPT-FL at round 2 (2,000), scratch at round 3 (3,000).
    assert "GPT-FL reaches 81.0% with 1.5x less communication than FL from scratch." in report


def test_sweep_table_says_in_how_many_rounds_a_target_was_not_reached():
    stuck = [Curve("FL from scratch", [0, 1, 2, 3, 4], [0.1] * 5, [0.1] * 5, [0, 1, 2, 3, 4]) for _ in range(2)]
    row = federation_row((), "FL from scratch", stuck, 2, 0.5)
    assert "| not reached in 4 rounds | not reached in 4 rounds |" in markdown_table([row], [], False)


def test_report_draws_the_first_synthetic_samples_of_each_class(tmp_path):
    import h5py

    config = quickstart_run(tmp_path)
    write_federation(config.layout.federation("pretrain"), [0.3, 0.5])
    synth = config.layout.synth
    synth.mkdir(parents=True)
    labels = config.labels.load()
    with h5py.File(synth / "shard-00000.h5", "w") as shard:
        shard.attrs["complete"] = True
        shard.attrs["modality"] = "image"
        shard.attrs["labels"] = json.dumps(labels)
        shard["x"] = np.full((20, 32, 32, 3), 200, dtype=np.uint8)
        shard["y"] = np.arange(20, dtype=np.int64) % 10
    written = make_report(config)
    grid = config.layout.report / "synthetic_samples.png"
    assert str(grid) in written["plots"] and grid.read_bytes()[:4] == b"\x89PNG"
    assert "![synthetic_samples](synthetic_samples.png)" in config.layout.report_file.read_text()


def per_client(accuracies: list[float], finetuned: Optional[list[float]] = None) -> list[dict]:
    rows = [{"client": c, "holdout": 10, "accuracy": a} for c, a in enumerate(accuracies)]
    for row, tuned in zip(rows, finetuned or []):
        row["finetuned_accuracy"] = tuned
    return rows


def test_per_client_accuracy_is_tabled_and_plotted_for_both_methods(tmp_path):
    config = quickstart_run(tmp_path)
    gptfl = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 1.0]
    write_federation(config.layout.federation("pretrain"), [0.3, 0.5], client_accuracy=per_client(gptfl, [1.0] * 10))
    write_federation(config.layout.federation("scratch"), [0.1, 0.2], client_accuracy=per_client([0.5] * 9 + [0.0]))
    written = make_report(config)
    plot = config.layout.report / "client_accuracy.png"
    assert str(plot) in written["plots"] and plot.read_bytes()[:4] == b"\x89PNG"
    report = config.layout.report_file.read_text()
    assert "![client_accuracy](client_accuracy.png)" in report
    # numpy's 10th percentile of 0.1 .. 1.0 interpolates: 0.1 + 0.9 * 0.1 = 0.19.
    assert "| GPT-FL (round 1) | 10 | 0.5500 | 0.1900 | 0.1000 | 1.0000 | 1.0000 |" in report
    assert "| FL from scratch (round 1) | 10 | 0.4500 | 0.4500 | 0.0000 | | |" in report


def test_report_without_per_client_scores_has_no_such_plot(tmp_path):
    config = quickstart_run(tmp_path)
    write_federation(config.layout.federation("pretrain"), [0.3, 0.5])
    written = make_report(config)
    assert not (config.layout.report / "client_accuracy.png").exists()
    assert not any("client_accuracy" in plot for plot in written["plots"])
    assert "client accuracy" not in config.layout.report_file.read_text()
