"""A seeded, per-class held-out share: the test split of data published without one."""

from __future__ import annotations

import numpy as np


def stratified_test_mask(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the samples held out for testing: ``round(fraction * n_k)`` of each class ``k``,
    chosen by a generator seeded with ``seed`` alone."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(targets), dtype=bool)
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        count = int(round(fraction * len(members)))
        mask[rng.permutation(members)[:count]] = True
    return mask
