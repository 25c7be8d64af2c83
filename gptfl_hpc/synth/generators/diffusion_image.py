"""What every text-to-image diffusers family shares beyond Stable Diffusion 1.x/2.x: load the
pipeline class its ``model_index.json`` names, per-sample seeded latents and guidance, one
pipeline call per batch at a square resolution, float images -> uint8 pixels.

A family module sets the class attributes and, where its pipeline differs, ``load_arguments``,
``check_pipeline`` and ``call_arguments``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import Generator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class DiffusionImageGenerator(Generator):
    """Prompts -> uint8 ``(N, image_size, image_size, 3)`` images, each from its own seed and guidance."""

    modality = "image"
    dtype = np.dtype(np.uint8)
    #: The pipeline attribute every denoising step runs (what ``synth.model.compile`` compiles).
    denoiser: ClassVar[str] = "transformer"
    #: Swap in DPM-Solver++ (UNet families trained on DDPM noise); flow-matching families keep their own.
    dpm_solver: ClassVar[bool] = False

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        import diffusers

        from gptfl_hpc.synth.generators.runtime import compile_denoiser, use_dpm_solver
        from gptfl_hpc.synth.generators.saved import saved_class

        self._start(config, weights_dir)
        pipeline_class = getattr(diffusers, saved_class(weights_dir))
        pipeline = pipeline_class.from_pretrained(
            weights_dir, dtype=self.torch_dtype, **self.load_arguments(config, weights_dir)
        )
        self.check_pipeline(pipeline, weights_dir)
        if self.dpm_solver:
            pipeline = use_dpm_solver(pipeline, self.device)
        else:
            pipeline.set_progress_bar_config(disable=True)
            pipeline = pipeline.to(self.device)
        self.pipeline = pipeline
        compile_denoiser(pipeline, self.denoiser, config, self.device)

        self.resolution = config.resolution or self.native_resolution(pipeline)
        multiple = self.side_multiple(pipeline)
        if self.resolution % multiple:
            raise UserError(
                f"synth.model.resolution {self.resolution} is not a multiple of {multiple}; "
                f"{type(pipeline).__name__} needs one (e.g. {multiple * 64})"
            )
        self.image_size = int(image_size)
        self.sample_shape = (self.image_size, self.image_size, 3)

    # --- what a family may override ----------------------------------------------------------

    def load_arguments(self, config: GeneratorConfig, weights_dir: Path) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments (components left out, ...)."""
        return {}

    def check_pipeline(self, pipeline: Any, weights_dir: Path) -> None:
        """Refuse loaded weights this generator cannot drive as configured."""

    def side_multiple(self, pipeline: Any) -> int:
        """The generation side must be a multiple of this: VAE downsampling x the 2x2 patches."""
        return int(pipeline.vae_scale_factor * 2)

    def native_resolution(self, pipeline: Any) -> int:
        """The side the model was trained at: its denoiser's sample size in pixels."""
        return int(getattr(pipeline, self.denoiser).config.sample_size * pipeline.vae_scale_factor)

    def call_arguments(self, specs: Sequence[SampleSpec]) -> dict[str, Any]:
        """The pipeline call's arguments besides the size: prompts, seeds, guidance."""
        from gptfl_hpc.synth.generators.runtime import diffusion_arguments

        return diffusion_arguments(self.config, specs)

    # --- shared -------------------------------------------------------------------------------

    def raw_call(self, specs: Sequence[SampleSpec]) -> torch.Tensor:
        """The one pipeline call per batch: float images in [0, 1], ``(N, 3, R, R)`` on the device."""
        return self.pipeline(height=self.resolution, width=self.resolution, **self.call_arguments(specs)).images

    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        from gptfl_hpc.synth.generators.image import images_to_pixels
        from gptfl_hpc.synth.generators.runtime import apply_threads

        apply_threads(self.config)
        return images_to_pixels(self.raw_call(specs), specs, self.image_size, self.flagged)


def refuse_guidance_distilled_unet(pipeline: Any, weights_dir: Path) -> None:
    """LCM-distilled UNets take guidance as an embedding (``time_cond_proj_dim``), not per-sample
    classifier-free guidance."""
    if pipeline.unet.config.time_cond_proj_dim is not None:
        raise UserError(
            f"synth.model.weights: {weights_dir} is a guidance-distilled UNet (time_cond_proj_dim set), which "
            "has no per-sample classifier-free guidance; use a standard checkpoint of the family"
        )
