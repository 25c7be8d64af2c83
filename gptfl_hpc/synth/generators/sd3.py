"""Text-to-image with diffusers' ``StableDiffusion3Pipeline`` (SD 3 and 3.5): two CLIP encoders
and an optional T5 encoder, its own flow-matching scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.diffusion_image import DiffusionImageGenerator

if TYPE_CHECKING:
    from gptfl_hpc.synth.generators.config import GeneratorConfig

T5_COMPONENTS = ("text_encoder_3", "tokenizer_3")


class StableDiffusion3Generator(DiffusionImageGenerator):
    kind = "sd3"
    saved_classes = ("StableDiffusion3Pipeline",)

    @classmethod
    def check_saved(cls, config: GeneratorConfig, weights_dir: Path) -> None:
        from gptfl_hpc.synth.generators.saved import read_json

        index = read_json(weights_dir / "model_index.json")
        saved = [name for name in T5_COMPONENTS if None not in (index.get(name) or [None])]
        if config.text_encoder_3 and len(saved) < len(T5_COMPONENTS):
            raise UserError(
                f"synth.model.weights: {weights_dir} was saved without its T5 text encoder (text_encoder_3), "
                "but synth.model.text_encoder_3 is true; set synth.model.text_encoder_3: false to run without it"
            )

    def load_arguments(self, config: GeneratorConfig, weights_dir: Path) -> dict[str, Any]:
        self.check_saved(config, weights_dir)
        # Without T5 the pipeline feeds zeros in its place: less prompt fidelity, far less memory.
        return {} if config.text_encoder_3 else dict.fromkeys(T5_COMPONENTS)
