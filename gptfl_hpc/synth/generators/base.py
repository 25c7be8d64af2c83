"""One small interface for every generator: planned samples in, a batch of array samples out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class SampleSpec:
    """What the plan says about one sample; nothing else decides its content."""

    index: int
    label: int
    prompt: str
    seed: int
    guidance: float
    speaker: int = -1  # speecht5: row of the x-vector table; -1 for other generators


class Generator(ABC):
    """A loaded pipeline. ``generate`` returns ``len(specs)`` samples stacked along axis 0.

    Images are uint8 ``(N, H, W, 3)``; speech and sound are int16 PCM ``(N, T)`` at
    ``sample_rate``. A sample's content depends only on its spec (its own seeded CPU generator),
    never on the other samples of the batch.
    """

    kind: str
    modality: str
    sample_shape: tuple[int, ...]
    dtype: np.dtype
    sample_rate: Optional[int] = None
    weights: str = ""  # the configured weights (a path or "tiny"), recorded in shard attributes
    revision: str = ""  # a short fingerprint of the weights' files, recorded in shard attributes

    def __init__(self) -> None:
        self.flagged: list[tuple[int, str]] = []  # (sample index, problem) for NaN / all-black outputs

    @abstractmethod
    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        """The samples for ``specs``, in order."""
