"""Accuracy and macro-F1 on the real test split, each rank scoring its share.

Rank ``r`` of ``w`` scores test samples ``r, r + w, ...``; one ``all_reduce`` of the confusion matrix
and the loss sum then gives every rank the scores of the whole split.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from gptfl_hpc.data.base import LabeledDataset
from gptfl_hpc.ranks import rank_device


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``m[t, p]`` = samples of class ``t`` predicted as ``p`` (int64)."""
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat.cpu(), minlength=num_classes * num_classes).view(num_classes, num_classes)


def scores(matrix: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro-F1 (over classes that occur as a target or a prediction)."""
    matrix = matrix.double()
    total = matrix.sum()
    true_pos = matrix.diag()
    denominator = matrix.sum(0) + matrix.sum(1)  # 2 TP + FP + FN
    present = denominator > 0
    f1 = 2 * true_pos[present] / denominator[present]
    return {
        "accuracy": float(true_pos.sum() / total) if total > 0 else 0.0,
        "macro_f1": float(f1.mean()) if present.any() else 0.0,
    }


def evaluate(
    model: nn.Module,
    dataset: LabeledDataset,
    prepare: Callable[[Any], tuple[tuple[torch.Tensor, ...], torch.Tensor]],
    collate: Callable,
    batch_size: int,
    workers: int,
    autocast: Callable[[], Any],
) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of ``model`` on all of ``dataset``, shared out over the ranks."""
    rank, world = dist.get_rank(), dist.get_world_size()
    num_classes = dataset.num_classes
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=range(rank, len(dataset), world),
        collate_fn=collate,
        num_workers=workers,
        generator=torch.Generator(),  # iterator seeds from here, not from the global RNG
    )
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            for raw in loader:
                inputs, targets = prepare(raw)
                logits = model(*inputs).float()
                loss_sum += F.cross_entropy(logits, targets, reduction="sum").double().cpu()
                matrix += confusion_matrix(logits.argmax(1), targets, num_classes)
    finally:
        model.train(was_training)
    totals = torch.cat([matrix.flatten().double(), loss_sum.view(1)])
    if dist.get_backend() == "nccl":
        totals = totals.to(rank_device())
    dist.all_reduce(totals)  # float64 holds the counts of any real test split exactly
    totals = totals.cpu()
    matrix = totals[:-1].round().long().view(num_classes, num_classes)
    result = scores(matrix)
    result["loss"] = float(totals[-1] / max(int(matrix.sum()), 1))
    return result
