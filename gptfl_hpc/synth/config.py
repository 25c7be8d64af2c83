"""The ``synth`` config section: how many samples, how they are planned, sharded and run."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from gptfl_hpc.schema import Section, added
from gptfl_hpc.synth.generators.config import GeneratorConfig
from gptfl_hpc.synth.scoring.config import ScoreConfig


class SynthConfig(Section):
    """Synthetic data at ``multiplier`` x the real training set (or an explicit ``count``)."""

    model: GeneratorConfig = Field(default_factory=GeneratorConfig)
    multiplier: float = Field(1.0, gt=0, description="samples = multiplier x real training-set size")
    count: Optional[int] = Field(None, description="explicit number of samples; overrides multiplier")
    guidance: Optional[tuple[float, float]] = Field(
        (1.0, 5.0), description="guidance scale drawn per sample from U[lo, hi]; null for guidance-distilled "
        "models (their own fixed value, recorded per sample)"
    )
    samples_per_shard: int = Field(1000, ge=1)
    tasks: int = Field(1, ge=1, description="array tasks; shards are split into this many groups")
    flush_every: int = Field(64, ge=1, description="samples per committed block; rounded up to whole batches")
    score: Optional[ScoreConfig] = added(
        None, description="score every sample against its prompt with a CLIP/CLAP model; null = no scores"
    )

    @model_validator(mode="after")
    def _check(self) -> "SynthConfig":
        low, high = self.guidance if self.guidance is not None else (0.0, 0.0)
        if low > high:
            raise ValueError(f"synth.guidance [{low}, {high}] is inverted; write it as [low, high]")
        if low < 0:
            raise ValueError(f"synth.guidance [{low}, {high}] is negative; guidance scales are >= 0")
        if self.count is not None and self.count < 1:
            raise ValueError(f"synth.count {self.count} must be at least 1 (or null to use synth.multiplier)")
        return self
