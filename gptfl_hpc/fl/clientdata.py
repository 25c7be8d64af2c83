"""Client and test data as tensors resident on a rank's device.

A client's samples are decoded, transformed and moved to the device once, the first time the rank
trains that client; later rounds index the resident tensors, so local training never touches a
DataLoader, a worker process or the host. Images become normalised float ``N x 3 x H x W``
(``data.images.to_float_images``, as in pretraining); speech and audio become log-mel features
padded to the client's longest clip, with the true frame counts beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from gptfl_hpc.data.base import LabeledDataset
from gptfl_hpc.data.images import to_float_images


@dataclass
class Samples:
    """Inputs ``x``, int64 targets ``y`` and, for variable-length audio, frame counts ``lengths``."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


def load_samples(dataset: LabeledDataset, indices: Sequence[int], device: torch.device, transform=None) -> Samples:
    """Samples ``indices`` of ``dataset`` as device tensors (see the module docstring)."""
    indices = np.asarray(indices, dtype=np.int64)
    y = torch.from_numpy(dataset.targets[indices].copy()).to(device)
    if dataset.modality == "image":
        images = _stacked_images(dataset, indices)
        x = to_float_images(torch.from_numpy(images).permute(0, 3, 1, 2).to(device))
        return Samples(x.contiguous(), y)
    features = [_features(dataset, i, transform) for i in indices]
    if not features:  # e.g. a rank's share of a test set smaller than one batch per rank
        return Samples(torch.zeros(0, device=device), y, torch.zeros(0, dtype=torch.int64, device=device))
    lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.int64)
    padded = torch.zeros((len(features), int(lengths.max()) if len(features) else 0) + tuple(features[0].shape[1:]))
    for row, item in enumerate(features):
        padded[row, : item.shape[0]] = item
    return Samples(padded.to(device), y, lengths.to(device))


def _features(dataset: LabeledDataset, index: int, transform) -> torch.Tensor:
    x, _ = dataset[int(index)]
    return torch.as_tensor(transform(x) if transform is not None else x, dtype=torch.float32)


def _stacked_images(dataset: LabeledDataset, indices: np.ndarray) -> np.ndarray:
    """uint8 ``N x H x W x 3``; in-memory datasets (also behind a relabeling view) are indexed directly."""
    base = dataset
    while not hasattr(base, "samples") and hasattr(base, "dataset") and not hasattr(base, "indices"):
        base = base.dataset
    if hasattr(base, "samples"):
        return np.ascontiguousarray(base.samples[indices])
    return np.stack([dataset[int(i)][0] for i in indices])


class ClientStore:
    """Each client's samples, loaded on first use and kept on the device."""

    def __init__(self, dataset: LabeledDataset, clients: Sequence[np.ndarray], device: torch.device, transform=None):
        self.dataset = dataset
        self.clients = clients
        self.device = device
        self.transform = transform
        self._loaded: dict[int, Samples] = {}

    def __getitem__(self, client: int) -> Samples:
        if client not in self._loaded:
            self._loaded[client] = load_samples(self.dataset, self.clients[client], self.device, self.transform)
        return self._loaded[client]

    def size(self, client: int) -> int:
        return len(self.clients[client])
