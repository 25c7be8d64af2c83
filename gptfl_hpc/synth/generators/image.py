"""Text-to-image with a diffusers ``StableDiffusionPipeline`` and the DPM-Solver++ scheduler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import Generator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class StableDiffusionGenerator(Generator):
    """Prompts -> uint8 ``(N, image_size, image_size, 3)`` images, each from its own seed and scale."""

    kind = "stable_diffusion"
    modality = "image"
    saved_classes = ("StableDiffusionPipeline",)
    dtype = np.dtype(np.uint8)

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        from diffusers import StableDiffusionPipeline

        from gptfl_hpc.synth.generators.runtime import compile_denoiser, use_dpm_solver

        self._start(config, weights_dir)
        extra = {}
        if not _has_safety_checker(weights_dir):
            # Saved without one (tiny and many local models): say so instead of warning about it.
            extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        pipeline = StableDiffusionPipeline.from_pretrained(weights_dir, dtype=self.torch_dtype, **extra)
        if pipeline.unet.config.time_cond_proj_dim is not None:
            raise UserError(
                f"synth.model.weights: {weights_dir} is a guidance-distilled UNet (time_cond_proj_dim set), which "
                "has no per-sample classifier-free guidance; use a standard Stable Diffusion checkpoint"
            )
        self.pipeline = use_dpm_solver(pipeline, self.device)
        compile_denoiser(self.pipeline, "unet", config, self.device)

        self.resolution = config.resolution or pipeline.unet.config.sample_size * pipeline.vae_scale_factor
        if self.resolution % 8:
            raise UserError(
                f"synth.model.resolution {self.resolution} is not a multiple of 8; "
                "Stable Diffusion needs one (e.g. 512)"
            )
        self.image_size = int(image_size)
        self.sample_shape = (self.image_size, self.image_size, 3)

    def raw_call(self, specs: Sequence[SampleSpec]) -> torch.Tensor:
        """The one pipeline call per batch: float images in [0, 1], ``(N, 3, R, R)`` on the device."""
        from gptfl_hpc.synth.generators.runtime import diffusion_arguments

        return self.pipeline(
            height=self.resolution, width=self.resolution, **diffusion_arguments(self.config, specs)
        ).images

    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        from gptfl_hpc.synth.generators.runtime import apply_threads

        apply_threads(self.config)
        return images_to_pixels(self.raw_call(specs), specs, self.image_size, self.flagged)


def images_to_pixels(
    images: torch.Tensor, specs: Sequence[SampleSpec], image_size: int, flagged: list[tuple[int, str]]
) -> np.ndarray:
    """Float images in [0, 1] ``(N, 3, R, R)`` -> uint8 ``(N, image_size, image_size, 3)``; NaN
    images are flagged and written black, all-black ones flagged."""
    import torch
    import torch.nn.functional as F

    from gptfl_hpc.synth.generators.runtime import flag, nan_rows

    images = images.float()
    bad = nan_rows(images)
    for spec in (s for s, b in zip(specs, bad.tolist()) if b):
        flag(flagged, spec, "non-finite image (NaN or inf); written as black")
    images = torch.nan_to_num(images, nan=0.0, posinf=0.0, neginf=0.0)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        # Antialiasing matters when shrinking (512 -> 32): plain bicubic would alias.
        images = F.interpolate(images, size=(image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
    pixels = (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for spec, row, was_bad in zip(specs, pixels, bad.tolist()):
        if not was_bad and not row.any():
            flag(flagged, spec, "all-black image (e.g. blanked by the safety checker)")
    return np.ascontiguousarray(pixels)


def _has_safety_checker(weights_dir: Path) -> bool:
    entry = json.loads((weights_dir / "model_index.json").read_text(encoding="utf-8")).get("safety_checker")
    return bool(entry) and entry[0] is not None
