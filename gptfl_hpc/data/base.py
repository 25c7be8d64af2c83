"""The one dataset interface every real and synthetic dataset implements.

A ``LabeledDataset`` is a map-style dataset (``len`` and ``ds[i]``, what ``torch.utils.data.DataLoader``
takes) with three extra attributes:

- ``labels``: the ordered label names; class index ``k`` means ``labels[k]``.
- ``targets``: int64 numpy array, the class index of every sample (``len(targets) == len(ds)``).
- ``modality``: ``"image"``, ``"speech"`` or ``"audio"`` (the same words as a synthesis shard).

And two for messages: ``source``, the dataset as the user knows it ("the CIFAR-10 train split at
/data/cifar"), and ``selection``, set when samples of labels the run does not use were dropped
(``gptfl_hpc.data.labels.LabelSelection``).

``ds[i]`` returns ``(x, y)`` with ``y`` a Python int and ``x``, before any transform:

- images: ``numpy.uint8`` array ``H x W x 3`` (RGB);
- speech and audio: ``numpy.float32`` mono waveform ``T`` in [-1, 1] at 16 kHz (``SAMPLE_RATE``).

``transform`` (optional) is applied to ``x`` inside ``__getitem__``, i.e. in the DataLoader
worker; e.g. ``gptfl_hpc.data.audio_features.LogMel`` for audio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
if TYPE_CHECKING:
    from gptfl_hpc.data.labels import LabelSelection

SAMPLE_RATE = 16_000
MODALITIES = ("image", "speech", "audio")

Transform = Callable[[Any], Any]

#: Per-sample string ids that views (``Subset``, ``labels.Relabeled``) carry along with the samples
#: they keep: ``client_ids`` (the value of a dataset's client column: writer, speaker, hospital)
#: and ``speakers`` (Speech Commands' name for the same ids).
PER_SAMPLE_IDS = ("client_ids", "speakers")


class LabeledDataset:
    """Base class: subclasses set ``labels``, ``targets``, ``modality`` and implement ``load``."""

    labels: list[str]
    targets: np.ndarray
    modality: str
    transform: Optional[Transform] = None
    source: str = "the dataset"
    selection: Optional["LabelSelection"] = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x = self.load(index)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[index])

    def load(self, index: int) -> np.ndarray:
        """The raw sample ``index`` in the shared format (see the module docstring)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=self.num_classes)


class ArrayDataset(LabeledDataset):
    """Samples held in memory as one stacked array (CIFAR, digits)."""

    def __init__(self, samples: np.ndarray, targets: np.ndarray, labels: Sequence[str], modality: str):
        if len(samples) != len(targets):
            raise ValueError(f"{len(samples)} samples but {len(targets)} targets")
        self.samples = samples
        self.targets = np.asarray(targets, dtype=np.int64)
        self.labels = list(labels)
        self.modality = modality

    def load(self, index: int) -> np.ndarray:
        return self.samples[index]


class Subset(LabeledDataset):
    """A view of some samples of a dataset (one client's share), keeping labels and modality."""

    def __init__(self, dataset: LabeledDataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = dataset.labels
        self.modality = dataset.modality
        self.source = dataset.source
        self.targets = dataset.targets[self.indices]
        for name in PER_SAMPLE_IDS:
            ids = getattr(dataset, name, None)
            if ids is not None:
                setattr(self, name, ids[self.indices])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x, y = self.dataset[int(self.indices[index])]
        if self.transform is not None:
            x = self.transform(x)
        return x, y
