"""Text-to-image with diffusers' ``FluxPipeline`` (FLUX.1 schnell and dev): guidance-distilled,
so no classifier-free guidance. Dev embeds a guidance value (``guidance_embeds`` in its transformer
config), given here per sample; schnell takes none, so ``synth.guidance`` must be null for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import DISTILLED, EMBEDDED, SampleSpec
from gptfl_hpc.synth.generators.diffusion_image import DiffusionImageGenerator

if TYPE_CHECKING:
    from gptfl_hpc.synth.generators.config import GeneratorConfig

#: The embedded guidance FLUX.1 dev was distilled over; the pipeline's default is 3.5.
EMBEDDED_RANGE = (1.0, 10.0)
DEV_DEFAULT_GUIDANCE = 3.5
#: Longest T5 prompt the pipeline accepts.
MAX_T5_TOKENS = 512


class FluxGenerator(DiffusionImageGenerator):
    kind = "flux"
    saved_classes = ("FluxPipeline",)

    @classmethod
    def guidance_mode(cls, weights_dir: Optional[Path]) -> str:
        from gptfl_hpc.synth.generators.saved import component_config

        if weights_dir is None:  # the tiny FLUX is built like dev
            return EMBEDDED
        return EMBEDDED if component_config(weights_dir, "transformer").get("guidance_embeds") else DISTILLED

    @classmethod
    def fixed_guidance(cls, weights_dir: Optional[Path]) -> float:
        return DEV_DEFAULT_GUIDANCE if cls.guidance_mode(weights_dir) == EMBEDDED else 0.0

    @classmethod
    def check_embedded_guidance(cls, guidance: tuple[float, float]) -> None:
        low, high = EMBEDDED_RANGE
        if guidance[0] < low or guidance[1] > high:
            raise UserError(
                f"synth.guidance {list(guidance)} is outside FLUX.1 dev's embedded guidance range [{low}, {high}]; "
                f"set a range within it, or null for its default {DEV_DEFAULT_GUIDANCE}"
            )

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        if config.negative_prompt:
            raise UserError(
                "synth.model.negative_prompt is set, but FLUX.1 is guidance-distilled and runs no unconditional "
                "branch to steer away from; set synth.model.negative_prompt: null"
            )
        super().__init__(config, image_size, weights_dir, vocoder_dir)
        self.embeds_guidance = bool(self.pipeline.transformer.config.guidance_embeds)
        self.sample_guidance = None
        if self.embeds_guidance:
            # The stock pipeline embeds one guidance value for the whole batch; this hands the
            # transformer each sample's own value instead, on every step.
            self.pipeline.transformer.register_forward_pre_hook(self._per_sample_guidance, with_kwargs=True)

    def _per_sample_guidance(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        guidance = kwargs.get("guidance")
        if guidance is not None and self.sample_guidance is not None:
            kwargs["guidance"] = self.sample_guidance.to(device=guidance.device, dtype=guidance.dtype)
        return args, kwargs

    def native_resolution(self, pipeline: Any) -> int:
        return int(pipeline.default_sample_size * pipeline.vae_scale_factor)

    def call_arguments(self, specs: Sequence[SampleSpec]) -> dict[str, Any]:
        import torch

        from gptfl_hpc.synth.generators.runtime import sample_generators

        self.sample_guidance = torch.tensor([spec.guidance for spec in specs], dtype=torch.float32)
        return {
            "prompt": [spec.prompt for spec in specs],
            "num_inference_steps": self.config.steps,
            "guidance_scale": DEV_DEFAULT_GUIDANCE,  # replaced per sample by the hook (dev); unused by schnell
            "generator": sample_generators(specs),
            "output_type": "pt",
            "max_sequence_length": min(MAX_T5_TOKENS, self.pipeline.tokenizer_2.model_max_length),
        }
