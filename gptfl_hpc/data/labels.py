"""Match a dataset to the run's ordered label list by label *name*.

The run's label list fixes the class indices of every stage. A dataset that uses another order
is re-indexed through a lookup table. A dataset may hold more labels than the run (Speech
Commands' 35 words for a 10-keyword run, CIFAR-100 for a few of its classes): samples of the
labels the run does not use are dropped, and one INFO line says how many. A run label the
dataset lacks is a ``UserError`` naming it (its class would silently have no data). Names are
compared after ``canonical_label`` (case, ``_`` vs space and surrounding whitespace do not
matter), so CIFAR-100's ``aquarium_fish`` matches ``aquarium fish``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from gptfl_hpc.data.base import PER_SAMPLE_IDS, LabeledDataset
from gptfl_hpc.errors import UserError

log = logging.getLogger(__name__)

#: ``label_mapping``'s entry for a source label the run does not use: its samples are dropped.
DROPPED = -1


def canonical_label(name: str) -> str:
    """The form two label names are compared in."""
    return " ".join(name.replace("_", " ").lower().split())


def label_mapping(source: Sequence[str], run_labels: Sequence[str], what: str = "the dataset") -> np.ndarray:
    """Array ``m`` with ``m[k]`` = index in ``run_labels`` of ``source[k]``, or ``DROPPED``.

    ``what`` names the source for the user ("the CIFAR-10 train split at /data/cifar"). Every run
    name must be in the source, else a class would silently have no data: ``UserError``.
    """
    run_index = _index_by_name(run_labels, "the run's label list")
    source_index = _index_by_name(source, f"the label list of {what}")
    absent = [name for name in run_labels if canonical_label(name) not in source_index]
    if absent:
        unused = unused_labels(source, run_labels)
        spare = f" (its labels the run does not use: {_shorten(unused)})" if unused else ""
        them = "them" if len(absent) > 1 else "it"
        raise UserError(
            f"{what} has no label{'s' if len(absent) > 1 else ''} {_shorten(absent)}{spare}; "
            f"correct or remove {them} in labels.names, or use data that has {them}"
        )
    return np.array([run_index.get(canonical_label(name), DROPPED) for name in source], dtype=np.int64)


def unused_labels(source: Iterable[str], run_labels: Sequence[str]) -> list[str]:
    """The names of ``source`` that are not in ``run_labels``, in source order."""
    run_names = {canonical_label(name) for name in run_labels}
    return [name for name in source if canonical_label(name) not in run_names]


@dataclass(frozen=True)
class LabelSelection:
    """What matching a dataset to a subset of its labels kept and dropped."""

    source: str  # the dataset, as the user knows it
    kept: int  # samples of the run's labels
    dropped: int  # samples of the other labels
    run_labels: int
    other_labels: int  # the dataset's labels that the run does not use

    def describe(self) -> str:
        return (
            f"{self.source}: kept {self.kept} samples of {self.run_labels} labels, "
            f"dropped {self.dropped} samples of {self.other_labels} other labels"
        )


def report_selection(selection: LabelSelection) -> None:
    """Log the selection; nothing left is a ``UserError`` (no stage can use an empty dataset)."""
    if selection.kept == 0:
        raise UserError(
            f"{selection.source} has no samples of the run's {selection.run_labels} labels "
            f"(all {selection.dropped} are of other labels); check labels.names against the data"
        )
    log.info(selection.describe())


def match_labels(dataset: LabeledDataset, run_labels: Sequence[str]) -> LabeledDataset:
    """``dataset`` re-indexed so that class ``k`` means ``run_labels[k]``, other labels dropped."""
    mapping = label_mapping(dataset.labels, run_labels, what=dataset.source)
    if np.array_equal(mapping, np.arange(len(run_labels))) and list(dataset.labels) == list(run_labels):
        return dataset
    matched = Relabeled(dataset, mapping, run_labels)
    if matched.selection is not None:
        report_selection(matched.selection)
    return matched


class Relabeled(LabeledDataset):
    """A dataset seen through a class-index lookup table, without the samples it maps to ``DROPPED``.

    When samples are dropped, ``indices`` holds the source index of each kept one (the name
    ``Subset`` uses, so code reaching through views to in-memory samples stops here) and
    ``targets`` and the per-sample ids (``client_ids``, ``speakers``) are those of the kept samples, in source order.
    """

    def __init__(self, dataset: LabeledDataset, mapping: np.ndarray, labels: Sequence[str]):
        self.dataset = dataset
        self.mapping = mapping
        self.labels = list(labels)
        self.modality = dataset.modality
        self.source = dataset.source
        targets = mapping[dataset.targets]
        ids = {name: getattr(dataset, name) for name in PER_SAMPLE_IDS if getattr(dataset, name, None) is not None}
        kept = np.flatnonzero(targets != DROPPED)
        if len(kept) < len(targets):
            self.indices = kept
            self.selection = LabelSelection(
                self.source,
                kept=len(kept),
                dropped=len(targets) - len(kept),
                run_labels=len(self.labels),
                other_labels=int((mapping == DROPPED).sum()),
            )
            targets = targets[kept]
            ids = {name: values[kept] for name, values in ids.items()}
        self.targets = targets
        for name, values in ids.items():
            setattr(self, name, values)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if self.selection is not None:
            index = int(self.indices[index])
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
