"""The synthesis plan: sample ``i`` -> (class, prompt, seed, guidance, speaker) from ``(run seed, i)``.

Nothing about a sample depends on which node, task or restart makes it: its fields are a counter-
based hash (SplitMix64) of the run seed, the sample index and a stream number per field. Classes are
interleaved (``i mod C``), so every class gets the same number of samples -- the server knows only
the label set -- and every shard holds nearly the same class histogram.

Shard ``k`` covers the fixed index range ``[k * S, min((k + 1) * S, total))``
(``gptfl_hpc.shards.ranges``); array task ``t`` covers a fixed group of consecutive shards.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.shards.manifest import read_plan
from gptfl_hpc.shards.ranges import ShardRanges
from gptfl_hpc.synth.generators.base import SampleSpec

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
# One stream per sample field, so changing how prompts are drawn never moves the seeds.
_PROMPT, _SEED, _GUIDANCE, _SPEAKER = 1, 2, 3, 4


def _splitmix64(values: np.ndarray) -> np.ndarray:
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def sample_hash(run_seed: int, indices: np.ndarray, stream: int) -> np.ndarray:
    """64-bit hash of ``(run_seed, stream, i)`` for each index, as uint64."""
    key = int(_splitmix64(np.array([(run_seed * 8 + stream) & _MASK64], dtype=np.uint64))[0])
    with np.errstate(over="ignore"):
        counters = np.uint64(key) + (indices.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
    return _splitmix64(counters)


@dataclass(frozen=True)
class Plan:
    """Everything the tasks need to agree on, fixed before any sample is made."""

    run_seed: int
    num_labels: int
    per_class: int
    samples_per_shard: int
    shards_per_task: int
    guidance: tuple[float, float]
    num_speakers: int = 0

    @property
    def total(self) -> int:
        return self.per_class * self.num_labels

    @property
    def ranges(self) -> ShardRanges:
        return ShardRanges(total=self.total, samples_per_shard=self.samples_per_shard)

    @property
    def num_shards(self) -> int:
        return self.ranges.num_shards

    @property
    def num_tasks(self) -> int:
        return math.ceil(self.num_shards / self.shards_per_task)

    def shard_range(self, shard: int) -> tuple[int, int]:
        return self.ranges.shard_range(shard)

    def task_shards(self, task: int) -> range:
        if not 0 <= task < self.num_tasks:
            raise UserError(f"task {task} is outside the plan's {self.num_tasks} tasks (0..{self.num_tasks - 1})")
        first = task * self.shards_per_task
        return range(first, min(first + self.shards_per_task, self.num_shards))

    def specs(self, start: int, stop: int, prompts: Sequence[Sequence[str]]) -> list[SampleSpec]:
        """The samples ``start..stop-1``; ``prompts[c]`` are the prompts of class ``c``."""
        indices = np.arange(start, stop, dtype=np.int64)
        labels = indices % self.num_labels
        prompt_draw = sample_hash(self.run_seed, indices, _PROMPT)
        seeds = sample_hash(self.run_seed, indices, _SEED) >> np.uint64(1)  # fits torch's int64 seeds
        unit = (sample_hash(self.run_seed, indices, _GUIDANCE) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        low, high = self.guidance
        guidance = low + (high - low) * unit
        speakers = (
            (sample_hash(self.run_seed, indices, _SPEAKER) % np.uint64(self.num_speakers)).astype(np.int64)
            if self.num_speakers
            else np.full(len(indices), -1, dtype=np.int64)
        )
        specs = []
        for j, index in enumerate(indices):
            options = prompts[int(labels[j])]
            specs.append(
                SampleSpec(
                    index=int(index),
                    label=int(labels[j]),
                    prompt=options[int(prompt_draw[j] % np.uint64(len(options)))],
                    seed=int(seeds[j]),
                    guidance=float(guidance[j]),
                    speaker=int(speakers[j]),
                )
            )
        return specs

    def summary(self) -> dict[str, Any]:
        values = asdict(self)
        values.update(total=self.total, num_shards=self.num_shards, num_tasks=self.num_tasks)
        values["guidance"] = list(self.guidance)
        return values

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> "Plan":
        """The plan a ``summary()`` describes."""
        values = {field.name: summary[field.name] for field in fields(cls) if field.name in summary}
        values["guidance"] = tuple(values["guidance"])
        return cls(**values)


def saved_plan(synth_dir: Path) -> Optional[tuple[Plan, list[str]]]:
    """The plan and labels a synthesis folder was made with; None when it has none saved."""
    return read_plan(synth_dir, Plan.from_summary)


def make_plan(
    *,
    run_seed: int,
    num_labels: int,
    total: int,
    samples_per_shard: int,
    tasks: int,
    guidance: tuple[float, float],
    num_speakers: int = 0,
) -> Plan:
    """A plan for about ``total`` samples (rounded to whole classes) split over at most ``tasks``."""
    if num_labels < 1:
        raise UserError("the run has no labels; list them under labels.names")
    if total < 1:
        raise UserError(f"synthesis would make {total} samples; raise synth.multiplier or set synth.count")
    per_class = max(1, round(total / num_labels))
    num_shards = ShardRanges(total=per_class * num_labels, samples_per_shard=samples_per_shard).num_shards
    shards_per_task = math.ceil(num_shards / min(tasks, num_shards))
    return Plan(
        run_seed=run_seed,
        num_labels=num_labels,
        per_class=per_class,
        samples_per_shard=samples_per_shard,
        shards_per_task=shards_per_task,
        guidance=(float(guidance[0]), float(guidance[1])),
        num_speakers=num_speakers,
    )
