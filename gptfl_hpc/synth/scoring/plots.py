"""Pictures of the scores: each class's lowest- and highest-scoring samples, and the per-class distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gptfl_hpc.durable import atomic_path
from gptfl_hpc.synth.scoring.stats import ScoredSamples, extremes

#: Samples shown per class on each side (lowest, highest) of the extremes grid.
EXTREMES_PER_SIDE = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def plot_extremes(path: Path, samples: ScoredSamples, per_side: int = EXTREMES_PER_SIDE) -> Path:
    """One row per class: its ``per_side`` lowest-scoring samples, then its highest, each titled with
    its score; images as they are stored, audio as spectrograms."""
    plt = _pyplot()
    chosen = extremes(samples, per_side)
    columns = 2 * per_side
    figure, axes = plt.subplots(len(samples.labels), columns, figsize=(columns * 1.1 + 1.4, len(samples.labels) * 1.2),
                                dpi=100, squeeze=False)
    for label, row in enumerate(axes):
        lowest, highest = chosen.get(label, (np.array([], int), np.array([], int)))
        cells = list(lowest) + [None] * (per_side - len(lowest)) + list(highest)
        for cell, position in zip(row, cells):
            if position is not None:
                _draw(cell, samples, int(position))
                cell.set_title(f"{samples.score[position]:.3f}", fontsize=7)
            cell.set_xticks([])
            cell.set_yticks([])
        row[0].set_ylabel(samples.labels[label], rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(f"lowest {per_side} (left) and highest {per_side} (right) scores per class", fontsize=10)
    return _save(plt, figure, path)


def _draw(cell, samples: ScoredSamples, position: int) -> None:
    x = samples.sample(position)
    if samples.modality == "image":
        cell.imshow(x, interpolation="nearest")
        return
    waveform = x.astype(np.float32) / (32768.0 if np.issubdtype(x.dtype, np.integer) else 1.0)
    rate = samples.sample_rate or 16000
    cell.specgram(waveform, NFFT=min(512, len(waveform)), Fs=rate, noverlap=min(256, len(waveform) // 2),
                  cmap="magma")


def plot_distribution(path: Path, samples: ScoredSamples) -> Path:
    """A box plot of each class's scores."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(6.0, 0.5 * len(samples.labels) + 2), 4), dpi=100)
    present = [index for index in range(len(samples.labels)) if (samples.y == index).any()]
    axes.boxplot([samples.score[samples.y == index] for index in present], showfliers=True)
    axes.set_xticks(range(1, len(present) + 1), [samples.labels[index] for index in present], rotation=45,
                    ha="right", fontsize=8)
    axes.set_ylabel("prompt-sample score (cosine)")
    axes.set_title("synthetic sample scores per class")
    return _save(plt, figure, path)
