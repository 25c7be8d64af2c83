"""Matching datasets to the run's label list by name, and dropping the labels the run does not use."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from gptfl_hpc.data.base import ArrayDataset, Subset
from gptfl_hpc.data.images import to_float_images
from gptfl_hpc.data.labels import DROPPED, canonical_label, label_mapping, match_labels
from gptfl_hpc.errors import UserError
from gptfl_hpc.fl.clientdata import load_samples


def tiny_dataset(labels=("cat", "dog", "aquarium_fish")) -> ArrayDataset:
    samples = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1).repeat(3, axis=3)
    return ArrayDataset(samples, np.array([0, 1, 2, 0, 1, 2]), list(labels), "image")


def test_reindexes_to_the_run_order_by_name():
    ds = tiny_dataset()
    run = ["Aquarium Fish", "dog", "cat"]
    matched = match_labels(ds, run)
    assert matched.labels == run
    assert list(matched.targets) == [2, 1, 0, 2, 1, 0]
    for i in range(len(ds)):
        x, y = matched[i]
        assert run[y] == {"cat": "cat", "dog": "dog", "aquarium_fish": "Aquarium Fish"}[ds.labels[ds[i][1]]]
        assert np.array_equal(x, ds[i][0])


def test_same_order_returns_the_dataset_itself():
    ds = tiny_dataset()
    assert match_labels(ds, list(ds.labels)) is ds


def test_a_run_label_the_dataset_lacks_fails_naming_it_and_the_fix():
    ds = tiny_dataset()
    ds.source = "the CIFAR-10 train split at /data/cifar"
    with pytest.raises(UserError) as exc_info:
        match_labels(ds, ["cat", "dog", "horse"])
    message = str(exc_info.value)
    assert "\n" not in message
    assert message.startswith("the CIFAR-10 train split at /data/cifar has no label 'horse'")
    assert "'aquarium_fish'" in message and "labels.names" in message  # the unused name hints at a typo
    assert "ArrayDataset" not in message


def test_label_mapping_marks_labels_the_run_does_not_use():
    mapping = label_mapping(["yes", "no", "bed", "up", "cat"], ["up", "yes", "no"])
    assert list(mapping) == [1, 2, DROPPED, 0, DROPPED]


def test_a_label_subset_keeps_only_its_samples_in_the_run_order(caplog):
    samples = np.arange(9, dtype=np.uint8).reshape(9, 1, 1, 1).repeat(3, axis=3)
    targets = np.array([0, 1, 2, 3, 0, 1, 2, 3, 2])  # cat dog aquarium_fish horse cat dog fish horse fish
    ds = ArrayDataset(samples, targets, ["cat", "dog", "aquarium_fish", "horse"], "image")
    ds.source = "the CIFAR-100 train split at /data/c100"
    with caplog.at_level(logging.INFO, logger="gptfl_hpc.data.labels"):
        matched = match_labels(ds, ["aquarium fish", "cat"])
    assert matched.labels == ["aquarium fish", "cat"] and len(matched) == 5
    assert list(matched.indices) == [0, 2, 4, 6, 8]
    assert list(matched.targets) == [1, 0, 1, 0, 0]
    assert [(int(x[0, 0, 0]), y) for x, y in (matched[i] for i in range(len(matched)))] == [
        (0, 1), (2, 0), (4, 1), (6, 0), (8, 0)
    ]
    assert list(matched.class_counts()) == [3, 2]
    selection = matched.selection
    assert (selection.kept, selection.dropped, selection.run_labels, selection.other_labels) == (5, 4, 2, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "the CIFAR-100 train split at /data/c100: kept 5 samples of 2 labels, dropped 4 samples of 2 other labels"
    ]


def test_a_reordering_without_drops_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="gptfl_hpc.data.labels"):
        matched = match_labels(tiny_dataset(), ["dog", "cat", "aquarium fish"])
    assert matched.selection is None and not hasattr(matched, "indices") and len(matched) == 6
    assert caplog.records == []


def test_a_subset_without_samples_is_one_line():
    ds = ArrayDataset(np.zeros((2, 1, 1, 3), np.uint8), np.array([2, 2]), ["cat", "dog", "fish"], "image")
    with pytest.raises(UserError) as exc_info:
        match_labels(ds, ["cat", "dog"])
    message = str(exc_info.value)
    assert "\n" not in message and "no samples of the run's 2 labels (all 2 are of other labels)" in message


def test_speakers_follow_the_kept_samples():
    ds = tiny_dataset()
    ds.speakers = np.array(["s0", "s1", "s2", "s3", "s4", "s5"])
    matched = match_labels(ds, ["dog", "aquarium fish"])
    assert list(matched.speakers) == ["s1", "s2", "s4", "s5"]
    part = Subset(matched, [3, 0])
    assert list(part.speakers) == ["s5", "s1"] and list(part.targets) == [1, 0]
    assert [int(part[i][0][0, 0, 0]) for i in range(2)] == [5, 1]


def test_client_loading_reads_the_kept_samples():
    """The FL client store reaches through views to in-memory samples; a dropping view must stop it."""
    samples = np.zeros((6, 2, 2, 3), np.uint8)
    samples[:, 0, 0, 0] = [10, 11, 12, 13, 14, 15]
    ds = ArrayDataset(samples, np.array([0, 1, 2, 0, 1, 2]), ["cat", "dog", "fish"], "image")
    matched = match_labels(ds, ["fish", "cat"])  # keeps source samples 0, 2, 3, 5
    loaded = load_samples(matched, [1, 3], torch.device("cpu"))
    assert loaded.y.tolist() == [0, 0]
    expected = torch.from_numpy(samples[[2, 5]]).permute(0, 3, 1, 2)
    assert torch.equal(loaded.x, to_float_images(expected))


def test_duplicate_run_names_fail():
    with pytest.raises(UserError, match="twice"):
        label_mapping(["cat"], ["cat", "Cat"])


def test_canonical_label():
    assert canonical_label("  Aquarium_fish ") == "aquarium fish"
    assert canonical_label("hard-leaved  pocket orchid") == "hard-leaved pocket orchid"


def test_subset_keeps_the_interface():
    ds = tiny_dataset()
    part = Subset(match_labels(ds, ["dog", "cat", "aquarium fish"]), [4, 0])
    assert part.labels == ["dog", "cat", "aquarium fish"]
    assert list(part.targets) == [0, 1] and len(part) == 2
    assert part[0][1] == 0 and part[0][0][0, 0, 0] == 4
