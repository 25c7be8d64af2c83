"""Each rank's micro-batches: a pure function of (seed, epoch), resumable at any position.

Every rank draws the same global order (``BlockBatchSampler`` seeded with the run seed and the
epoch) and takes its own contiguous slice of each global batch, so the ranks together see every
sample once per epoch and no rank needs to talk to another about data. Resuming at micro-batch
``position`` skips indices, not reads: the restarted run reads exactly what the uninterrupted run
would have read next.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterator

from torch.utils.data import Sampler

from gptfl_hpc.shards.reader import BlockBatchSampler


class RankBatchSampler(Sampler[list[int]]):
    """Micro-batches of ``micro_batch`` indices for ``rank`` of ``world_size``; full batches only."""

    def __init__(
        self,
        num_samples: int,
        micro_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        read_block: int = 1,
        micro_steps: int | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        self.micro_batch = micro_batch
        self.rank = rank
        self.global_order = BlockBatchSampler(
            num_samples, micro_batch * world_size, block_size=read_block, shuffle=True, seed=seed, drop_last=True
        )
        full = len(self.global_order)
        self.micro_steps = full if micro_steps is None else min(micro_steps, full)
        self.epoch = 0
        self.position = 0

    def set_position(self, epoch: int, position: int = 0) -> None:
        """Start the next iteration at micro-batch ``position`` of ``epoch``."""
        self.epoch, self.position = epoch, position

    def __iter__(self) -> Iterator[list[int]]:
        self.global_order.set_epoch(self.epoch)
        first = self.rank * self.micro_batch
        for batch in islice(self.global_order, self.position, self.micro_steps):
            yield batch[first : first + self.micro_batch]

    def __len__(self) -> int:
        return max(self.micro_steps - self.position, 0)
