"""Match a dataset to the run's ordered label list by label *name*.

The run's label list fixes the class indices of every stage. A dataset that uses another order
is re-indexed through a lookup table; one whose names differ fails with a ``UserError`` naming
the differences. Names are compared after ``canonical_label`` (case, ``_`` vs space and
surrounding whitespace do not matter), so CIFAR-100's ``aquarium_fish`` matches ``aquarium fish``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gptfl_hpc.data.base import LabeledDataset
from gptfl_hpc.errors import UserError


def canonical_label(name: str) -> str:
    """The form two label names are compared in."""
    return " ".join(name.replace("_", " ").lower().split())


def label_mapping(source: Sequence[str], run_labels: Sequence[str], what: str = "dataset") -> np.ndarray:
    """Array ``m`` with ``m[k]`` = index in ``run_labels`` of ``source[k]``; UserError on mismatch.

    Every source name must be in the run's list (else its samples would have no class), and every
    run name must be in the source (else a class would silently have no data).
    """
    run_index = _index_by_name(run_labels, "the run's label list")
    _index_by_name(source, f"the {what}'s labels")
    missing = [name for name in source if canonical_label(name) not in run_index]
    absent = [name for name in run_labels if canonical_label(name) not in {canonical_label(s) for s in source}]
    if missing or absent:
        parts = []
        if missing:
            parts.append(f"{what} labels not in the run's label list: {_shorten(missing)}")
        if absent:
            parts.append(f"run labels the {what} lacks: {_shorten(absent)}")
        raise UserError("; ".join(parts) + "; make labels.names match the dataset's label names")
    return np.array([run_index[canonical_label(name)] for name in source], dtype=np.int64)


def match_labels(dataset: LabeledDataset, run_labels: Sequence[str]) -> LabeledDataset:
    """``dataset`` re-indexed so that class ``k`` means ``run_labels[k]``."""
    mapping = label_mapping(dataset.labels, run_labels, what=type(dataset).__name__)
    if np.array_equal(mapping, np.arange(len(mapping))) and list(dataset.labels) == list(run_labels):
        return dataset
    return Relabeled(dataset, mapping, run_labels)


class Relabeled(LabeledDataset):
    """A dataset seen through a class-index lookup table."""

    def __init__(self, dataset: LabeledDataset, mapping: np.ndarray, labels: Sequence[str]):
        self.dataset = dataset
        self.mapping = mapping
        self.labels = list(labels)
        self.modality = dataset.modality
        self.targets = mapping[dataset.targets]
        speakers = getattr(dataset, "speakers", None)
        if speakers is not None:
            self.speakers = speakers

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x, y = self.dataset[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.mapping[y])


def _index_by_name(names: Sequence[str], where: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        key = canonical_label(name)
        if key in index:
            raise UserError(f"{where} names '{name}' twice (as '{names[index[key]]}' too); each label once")
        index[key] = position
    return index


def _shorten(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
