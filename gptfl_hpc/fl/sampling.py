"""Which clients train in a round, on which rank, and with which random numbers.

Everything here is a pure function of ``(seed, round, client)``: a resumed run, a run with another
number of ranks and an uninterrupted run draw the same cohort, and a client trains with the same
random stream whichever rank it lands on. Nothing reads or advances a global generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Distinct streams for distinct purposes, so e.g. the cohort draw never aliases a client's stream.
_COHORT, _CLIENT, _INIT, _SECURE, _HOLDOUT, _FINETUNE = 1, 2, 3, 4, 5, 6


def sample_clients(seed: int, round_index: int, num_clients: int, per_round: int) -> np.ndarray:
    """``per_round`` distinct client ids for round ``round_index``, sorted."""
    rng = np.random.default_rng([_COHORT, seed, round_index])
    return np.sort(rng.choice(num_clients, size=per_round, replace=False)).astype(np.int64)


def client_seed(seed: int, round_index: int, client: int) -> int:
    """The seed of ``client``'s stream in ``round_index`` (data order, dropout): 63 bits."""
    state = np.random.SeedSequence([_CLIENT, seed, round_index, client]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def holdout_rng(seed: int, client: int) -> np.random.Generator:
    """The generator that picks ``client``'s held-out samples: no round in it, so every resume agrees."""
    return np.random.default_rng([_HOLDOUT, seed, client])


def finetune_seed(seed: int, round_index: int, client: int) -> int:
    """The seed of ``client``'s personalisation steps after ``round_index`` (apart from its training stream)."""
    state = np.random.SeedSequence([_FINETUNE, seed, round_index, client]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def init_seed(seed: int) -> int:
    """The seed of a from-scratch global model; every rank builds the same one."""
    return int(np.random.SeedSequence([_INIT, seed]).generate_state(1, dtype=np.uint32)[0])


def secure_round_seed(seed: int, round_index: int) -> bytes:
    """32 bytes from which the simulated clients of a round derive their key-agreement secrets."""
    return np.random.SeedSequence([_SECURE, seed, round_index]).generate_state(8, dtype=np.uint32).tobytes()


def assign_to_ranks(clients: Sequence[int], costs: Sequence[int], world_size: int) -> list[list[int]]:
    """Balance the round's clients over ranks by cost (samples x epochs): longest first, to the least loaded.

    Ties break on client id and rank number, so every rank computes the same assignment. Each
    rank's list is sorted by client id.
    """
    order = sorted(range(len(clients)), key=lambda k: (-int(costs[k]), int(clients[k])))
    loads = [0] * world_size
    assigned: list[list[int]] = [[] for _ in range(world_size)]
    for k in order:
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        loads[rank] += int(costs[k])
        assigned[rank].append(int(clients[k]))
    return [sorted(ids) for ids in assigned]
