"""Per-sample classifier-free guidance through the stock diffusers pipelines' single float.

``StableDiffusionPipeline`` and ``AudioLDMPipeline`` take one ``guidance_scale`` for the whole
batch and use it in exactly two places (diffusers 0.42):

* ``guidance_scale > 1`` decides whether classifier-free guidance runs at all, and
* ``noise_uncond + guidance_scale * (noise_text - noise_uncond)`` combines the two predictions.

``GuidanceScales`` is a ``float`` for the first use and a per-sample ``(B, 1, ..., 1)`` tensor for
the second, so each sample of a batch gets its own scale while the pipelines run unmodified. Its
float value is ``+inf``: it always switches guidance on, and arithmetic that bypassed the
per-sample product would turn the output into inf/NaN (flagged by the generators) instead of
silently applying one scale to every sample. The tests prove the per-sample path: a batch gives
the same samples as each of its samples generated alone with its own scale.

Because guidance always runs, a scale is applied as given: 1 gives the conditional prediction,
values below 1 move towards the unconditional one (the stock pipelines would skip guidance there).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


class GuidanceScales(float):
    """One classifier-free guidance scale per sample, passed as a pipeline's ``guidance_scale``."""

    scales: torch.Tensor

    def __new__(cls, scales: Sequence[float]) -> "GuidanceScales":
        obj = super().__new__(cls, math.inf)
        obj.scales = torch.tensor([float(s) for s in scales], dtype=torch.float64)
        return obj

    def __mul__(self, other: object) -> torch.Tensor:
        if not isinstance(other, torch.Tensor):
            raise TypeError(f"per-sample guidance scales multiply tensors only, not {type(other).__name__}")
        if other.shape[0] != len(self.scales):
            raise ValueError(f"{len(self.scales)} guidance scales for a batch of {other.shape[0]}")
        shape = (len(self.scales),) + (1,) * (other.dim() - 1)
        # Like a Python-float scalar: half-precision products are computed in float32, then rounded.
        opmath = torch.promote_types(other.dtype, torch.float32)
        scales = self.scales.to(device=other.device, dtype=opmath).view(shape)
        return (other.to(opmath) * scales).to(other.dtype)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"GuidanceScales({self.scales.tolist()})"
