"""Text-to-audio with diffusers' ``AudioLDMPipeline`` and the DPM-Solver++ scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import SAMPLE_RATE, Generator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class AudioLDMGenerator(Generator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``, each from its own seed and guidance scale."""

    kind = "audioldm"
    modality = "audio"
    saved_classes = ("AudioLDMPipeline",)
    default_seconds = 5.0  # ESC-50 clips
    dtype = np.dtype(np.int16)
    sample_rate = SAMPLE_RATE

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        from diffusers import AudioLDMPipeline

        from gptfl_hpc.synth.generators.runtime import (
            apply_threads,
            compile_denoiser,
            resolve_device,
            resolve_dtype,
            use_dpm_solver,
        )
        from gptfl_hpc.synth.generators.weights import require_class, weights_revision

        require_class(weights_dir, self.saved_classes)
        apply_threads(config)
        self.config = config
        self.device = resolve_device(config)
        self.torch_dtype = resolve_dtype(config, self.device)
        pipeline = AudioLDMPipeline.from_pretrained(weights_dir, dtype=self.torch_dtype)
        if pipeline.vocoder.config.sampling_rate != SAMPLE_RATE:
            raise UserError(
                f"synth.model.weights: {weights_dir} makes {pipeline.vocoder.config.sampling_rate} Hz audio; "
                f"the sound datasets are {SAMPLE_RATE} Hz, use a {SAMPLE_RATE} Hz AudioLDM checkpoint"
            )
        self.pipeline = use_dpm_solver(pipeline, self.device)
        compile_denoiser(self.pipeline, "unet", config, self.device)

        self.seconds = config.audio_seconds
        self.length = int(round(self.seconds * SAMPLE_RATE))
        self.sample_shape = (self.length,)
        self.weights = config.weights
        self.revision = weights_revision(weights_dir)

    def raw_call(self, specs: Sequence[SampleSpec]) -> torch.Tensor:
        """The one pipeline call per batch: float waveforms ``(N, T)`` on the CPU."""
        from gptfl_hpc.synth.generators.runtime import diffusion_arguments

        return self.pipeline(audio_length_in_s=self.seconds, **diffusion_arguments(self.config, specs)).audios

    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        from gptfl_hpc.synth.generators.runtime import apply_threads, to_pcm16

        apply_threads(self.config)
        return to_pcm16(list(self.raw_call(specs)), self.length, specs, self.flagged)
