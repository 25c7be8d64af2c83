"""Text-to-image with diffusers' ``StableDiffusionXLPipeline``: both text encoders, DPM-Solver++,
micro-conditioning on the generated size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from gptfl_hpc.synth.generators.base import SampleSpec
from gptfl_hpc.synth.generators.diffusion_image import DiffusionImageGenerator, refuse_guidance_distilled_unet

if TYPE_CHECKING:
    from gptfl_hpc.synth.generators.config import GeneratorConfig


class StableDiffusionXLGenerator(DiffusionImageGenerator):
    kind = "sdxl"
    saved_classes = ("StableDiffusionXLPipeline",)
    denoiser = "unet"
    dpm_solver = True

    def load_arguments(self, config: GeneratorConfig, weights_dir: Path) -> dict[str, Any]:
        # The invisible watermark changes pixels after generation and needs a package of its own.
        return {"add_watermarker": False}

    def side_multiple(self, pipeline: Any) -> int:
        return int(pipeline.vae_scale_factor)

    def check_pipeline(self, pipeline: Any, weights_dir: Path) -> None:
        refuse_guidance_distilled_unet(pipeline, weights_dir)

    def call_arguments(self, specs: Sequence[SampleSpec]) -> dict[str, Any]:
        size = (self.resolution, self.resolution)
        # Micro-conditioning says "a full, uncropped image of the output size", so a 512 side is
        # not rendered as a crop of a 1024 one.
        return {
            **super().call_arguments(specs),
            "original_size": size,
            "target_size": size,
            "crops_coords_top_left": (0, 0),
        }
