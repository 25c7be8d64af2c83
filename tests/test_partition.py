"""Client partitions: Dirichlet, IID, by speaker; JSON files; the ``partition`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gptfl_hpc.data.partition import (
    Partition,
    dirichlet_partition,
    iid_partition,
    load_partition,
    save_partition,
    speaker_partition,
)
from gptfl_hpc.data.partition_report import classes_per_client, describe_partition
from gptfl_hpc.errors import UserError

# A CIFAR-10-shaped label vector: 10 classes x 500 samples, shuffled.
TARGETS = np.random.default_rng(123).permutation(np.repeat(np.arange(10), 500))


def assert_exact_cover(partition: Partition, n: int) -> None:
    flat = np.concatenate(partition.clients)
    assert len(flat) == n and np.array_equal(np.sort(flat), np.arange(n))
    assert all(np.array_equal(c, np.sort(c)) for c in partition.clients)


def mean_held_classes(alpha: float, seed: int) -> float:
    part = dirichlet_partition(TARGETS, 20, alpha, seed, min_client_size=10)
    return float(classes_per_client(part.class_counts(TARGETS, 10)).mean())


def test_dirichlet_assigns_every_sample_once_and_is_deterministic():
    a = dirichlet_partition(TARGETS, 20, 0.5, seed=7, min_client_size=20)
    b = dirichlet_partition(TARGETS, 20, 0.5, seed=7, min_client_size=20)
    c = dirichlet_partition(TARGETS, 20, 0.5, seed=8, min_client_size=20)
    assert_exact_cover(a, len(TARGETS))
    assert a.num_clients == 20 and a.sizes().min() >= 20
    assert all(np.array_equal(x, y) for x, y in zip(a.clients, b.clients))
    assert not all(np.array_equal(x, y) for x, y in zip(a.clients, c.clients))


def test_dirichlet_alpha_controls_heterogeneity():
    skewed = np.mean([mean_held_classes(0.1, seed) for seed in range(3)])
    near_iid = np.mean([mean_held_classes(1000.0, seed) for seed in range(3)])
    # Dir(0.1): a client's data is dominated by a few classes; Dir(1000): all 10 classes, ~10 % each.
    assert skewed < 4.0, skewed
    assert near_iid > 9.5, near_iid
    shares = dirichlet_partition(TARGETS, 10, 1000.0, 0).class_counts(TARGETS, 10)
    shares = shares / shares.sum(axis=1, keepdims=True)
    assert np.abs(shares - 0.1).max() < 0.05


def test_dirichlet_impossible_minimum_is_a_user_error():
    with pytest.raises(UserError, match="min_client_size"):
        dirichlet_partition(TARGETS[:100], 20, 0.5, 0, min_client_size=10)


def test_iid_partition_is_balanced():
    part = iid_partition(103, 10, seed=1)
    assert_exact_cover(part, 103)
    assert set(part.sizes().tolist()) == {10, 11}
    assert all(np.array_equal(x, y) for x, y in zip(part.clients, iid_partition(103, 10, seed=1).clients))


def test_speaker_partition_keeps_each_speaker_on_one_client():
    speakers = np.array(["s3", "s1", "s2", "s1", "s3", "s4", "s5", "s2"])
    per_speaker = speaker_partition(speakers, seed=0)
    assert per_speaker.num_clients == 5
    assert [speakers[c].tolist() for c in per_speaker.clients] == [
        ["s1", "s1"],
        ["s2", "s2"],
        ["s3", "s3"],
        ["s4"],
        ["s5"],
    ]
    merged = speaker_partition(speakers, seed=0, num_clients=2)
    assert_exact_cover(merged, len(speakers))
    owners = {}
    for client, members in enumerate(merged.clients):
        for speaker in speakers[members]:
            assert owners.setdefault(speaker, client) == client
    with pytest.raises(UserError, match="speakers"):
        speaker_partition(speakers, seed=0, num_clients=6)


def test_json_round_trip_and_validation(tmp_path):
    part = dirichlet_partition(TARGETS, 10, 0.5, seed=3)
    path = tmp_path / "partition.json"
    save_partition(path, part)
    payload = json.loads(path.read_text())
    assert sorted(payload["clients"], key=int) == [str(k) for k in range(10)]
    loaded = load_partition(path, num_samples=len(TARGETS))
    assert loaded.kind == "dirichlet" and loaded.seed == 3 and loaded.params["alpha"] == 0.5
    assert all(np.array_equal(x, y) for x, y in zip(part.clients, loaded.clients))
    with pytest.raises(UserError, match="covers"):
        load_partition(path, num_samples=10)
    payload["clients"]["0"] = payload["clients"]["0"][1:]
    path.write_text(json.dumps(payload))
    with pytest.raises(UserError, match="exactly once"):
        load_partition(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not JSON"):
        load_partition(path)
    assert list(tmp_path.iterdir()) == [path]  # the atomic write left no temporary file


def test_describe_partition_reports_min_median_max():
    part = iid_partition(len(TARGETS), 4, seed=0)
    text = describe_partition(part, TARGETS, [f"c{k}" for k in range(10)])
    assert "samples per client: min 1250, median 1250, max 1250" in text
    assert "classes per client: min 10, median 10, max 10" in text
    assert len(text.splitlines()) == 2 + 4 + 3


def test_partition_command_prints_stats_and_writes_png_and_json(tmp_path, capsys, quickstart_config):
    from gptfl_hpc.cli import main

    png, out = tmp_path / "heat.png", tmp_path / "p.json"
    rc = main(["partition", str(quickstart_config), "data.partition.alpha=0.1", "--png", str(png), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "dirichlet partition: 1438 samples, 10 clients, 10 classes" in printed
    assert "samples per client: min" in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_partition(out, num_samples=1438).num_clients == 10


def test_partition_command_refuses_labels_the_dataset_lacks(tmp_path, capsys, quickstart_config):
    from gptfl_hpc.cli import main

    rc = main(["partition", str(quickstart_config), "labels.names=[digit zero, airplane]"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "airplane" in err
