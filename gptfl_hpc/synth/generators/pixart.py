"""Text-to-image with diffusers' ``PixArtAlphaPipeline`` and ``PixArtSigmaPipeline``: a T5 text
encoder, a DiT denoiser, DPM-Solver++ as shipped."""

from __future__ import annotations

from typing import Any, Sequence

from gptfl_hpc.synth.generators.base import SampleSpec
from gptfl_hpc.synth.generators.diffusion_image import DiffusionImageGenerator


class PixArtGenerator(DiffusionImageGenerator):
    kind = "pixart"
    saved_classes = ("PixArtAlphaPipeline", "PixArtSigmaPipeline")

    def call_arguments(self, specs: Sequence[SampleSpec]) -> dict[str, Any]:
        arguments = super().call_arguments(specs)
        # PixArt's "" default is its unconditional prompt; resolution binning would generate at
        # another size than the one asked for; caption cleaning needs packages of its own and
        # the planned prompts are clean already.
        arguments["negative_prompt"] = arguments["negative_prompt"] or ""
        return {**arguments, "use_resolution_binning": False, "clean_caption": False}
