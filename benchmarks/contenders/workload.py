"""The benchmark workload, importable without gptfl_hpc so that every contender trains the same thing.

pfl-research's CIFAR-10 CNN on 100 users x 50 random CIFAR-shaped images, 10 users per round,
batch 10, one local epoch, SGD lr 0.1, FedAvg weighted by sample count.
"""

from __future__ import annotations

import torch
from torch import nn

USERS, PER_USER, COHORT, BATCH, LR, SEED = 100, 50, 10, 10, 0.1, 0


def pfl_cnn() -> nn.Module:
    """Conv 3->32, Conv 32->64, max-pool, FC 12544->128, FC 128->10; seeded so every contender starts equal."""
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(12544, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def user_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All users' images and labels; user ``u`` owns rows ``u * PER_USER : (u + 1) * PER_USER``."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(USERS * PER_USER, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (USERS * PER_USER,), generator=g)
    return x, y


def user_slice(user: int) -> slice:
    return slice(user * PER_USER, (user + 1) * PER_USER)
