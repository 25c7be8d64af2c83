"""Human-readable statistics of a partition and a clients x classes heat map (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np

from gptfl_hpc.data.partition import Partition
from gptfl_hpc.durable import atomic_save

# A class counts as "held" by a client when it is at least this share of the client's data.
HELD_SHARE = 0.05


def classes_per_client(counts: np.ndarray, share: float = HELD_SHARE) -> np.ndarray:
    """Number of classes making up at least ``share`` of each client's samples."""
    sizes = counts.sum(axis=1, keepdims=True)
    return ((counts >= share * np.maximum(sizes, 1)) & (counts > 0)).sum(axis=1)


def describe_partition(partition: Partition, targets: np.ndarray, labels: Sequence[str]) -> str:
    """A table (one row per client) and min / median / max summary lines."""
    counts = partition.class_counts(np.asarray(targets), len(labels))
    sizes = counts.sum(axis=1)
    present = (counts > 0).sum(axis=1)
    held = classes_per_client(counts)
    lines = [
        f"{partition.kind} partition: {partition.num_samples} samples, {partition.num_clients} clients, "
        f"{len(labels)} classes, seed {partition.seed}" + "".join(f", {k} {v}" for k, v in partition.params.items()),
        f"{'client':>8} {'samples':>8} {'classes':>8} {'>=5%':>6}  largest class",
    ]
    for client in range(partition.num_clients):
        top = int(np.argmax(counts[client])) if sizes[client] else None
        largest = f"{labels[top]} ({counts[client, top]})" if top is not None else "-"
        lines.append(f"{client:>8} {sizes[client]:>8} {present[client]:>8} {held[client]:>6}  {largest}")
    for name, values in (
        ("samples per client", sizes),
        ("classes per client", present),
        ("classes >=5% per client", held),
    ):
        lines.append(f"{name}: min {values.min()}, median {np.median(values):g}, max {values.max()}")
    return "\n".join(lines)


def plot_heatmap(partition: Partition, targets: np.ndarray, labels: Sequence[str], path: Union[str, Path]) -> None:
    """Write a PNG of sample counts, clients (rows) x classes (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = partition.class_counts(np.asarray(targets), len(labels))
    width = min(2 + 0.25 * len(labels), 40)
    height = min(2 + 0.2 * partition.num_clients, 40)
    figure, axes = plt.subplots(figsize=(width, height))
    image = axes.imshow(counts, aspect="auto", interpolation="nearest", cmap="viridis")
    axes.set_xlabel("class")
    axes.set_ylabel("client")
    axes.set_title(f"{partition.kind} partition: samples per client and class")
    if len(labels) <= 50:
        axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    figure.colorbar(image, ax=axes, label="samples")
    figure.tight_layout()
    atomic_save(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)
