"""Round metrics: test accuracy and macro-F1, gradient diversity, communication.

Evaluation is split over ranks by whole batches (fixed ``eval_batch_size``, so a sample's
prediction does not depend on the number of ranks) and the confusion matrices are summed; every
rank ends with the same numbers.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from gptfl_hpc.fl.client import FlatModel
from gptfl_hpc.fl.clientdata import Samples


def confusion_matrix(flat: FlatModel, samples: Samples, num_classes: int, batch_size: int) -> torch.Tensor:
    """``num_classes x num_classes`` int64 counts (rows: true class, columns: predicted)."""
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=flat.device)
    flat.model.eval()
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            x = samples.x[start : start + batch_size]
            y = samples.y[start : start + batch_size]
            lengths = None
            if samples.lengths is not None:
                lengths = samples.lengths[start : start + batch_size]
                x = x[:, : int(lengths.max())]
            predicted = flat.forward(x, lengths).argmax(dim=1)
            counts += torch.bincount(y * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def all_ranks_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in the test labels or predictions."""
    true_pos = np.diag(confusion).astype(np.float64)
    actual = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    present = (actual + predicted) > 0
    denominator = actual + predicted
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
    return float(f1[present].mean()) if present.any() else 0.0


def gradient_diversity(sq_norm_sum: float, sum_sq_norm: float) -> Optional[float]:
    """``sum_i ||d_i||^2 / ||sum_i d_i||^2`` (Yin et al.); None when the updates sum to zero."""
    return float(sq_norm_sum / sum_sq_norm) if sum_sq_norm > 0 else None


def tracked_values(record: dict, wall_s: Optional[float]) -> dict[str, Optional[float]]:
    """What a round's ``metrics.jsonl`` record shows a tracker (absent values are left out there)."""
    return {
        "test_accuracy": record.get("test_accuracy"),
        "test_macro_f1": record.get("test_macro_f1"),
        "train_loss": record.get("train_loss"),
        "gradient_diversity": record.get("gradient_diversity"),
        "params_communicated": record.get("params_cumulative"),
        "round_wall_s": wall_s,
        **{key: record.get(key) for key in CLIENT_STATISTICS},
    }


#: What ``federate.client_eval`` adds to a round's record on the rounds it runs.
CLIENT_STATISTICS = tuple(f"{score}_{statistic}" for score in ("client_accuracy", "finetuned_accuracy")
                          for statistic in ("mean", "p10", "worst"))
