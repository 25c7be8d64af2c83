"""Which samples each shard holds: shard ``k`` covers ``[k * S, min((k + 1) * S, total))``.

The ranges are fixed by the total and the samples per shard alone, so a writer, a checker and a
reader that agree on those two numbers agree on every shard's contents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class ShardRanges:
    """``total`` samples cut into shards of ``samples_per_shard`` (the last one may be shorter)."""

    total: int
    samples_per_shard: int

    @property
    def num_shards(self) -> int:
        return math.ceil(self.total / self.samples_per_shard)

    def shard_range(self, shard: int) -> tuple[int, int]:
        start = shard * self.samples_per_shard
        return start, min(start + self.samples_per_shard, self.total)

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> "ShardRanges":
        """The ranges of a saved plan summary (its ``total`` and ``samples_per_shard``)."""
        return cls(total=summary["total"], samples_per_shard=summary["samples_per_shard"])
