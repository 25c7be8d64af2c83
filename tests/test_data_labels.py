"""Matching datasets to the run's label list by name."""

from __future__ import annotations

import numpy as np
import pytest

from gptfl_hpc.data.base import ArrayDataset, Subset
from gptfl_hpc.data.labels import canonical_label, label_mapping, match_labels
from gptfl_hpc.errors import UserError


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


def test_mismatched_names_fail_naming_them():
    with pytest.raises(UserError) as exc_info:
        match_labels(tiny_dataset(), ["cat", "dog", "horse"])
    message = str(exc_info.value)
    assert "\n" not in message
    assert "'aquarium_fish'" in message and "'horse'" in message


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
