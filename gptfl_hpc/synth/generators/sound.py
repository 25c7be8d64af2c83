"""Text-to-audio with diffusers' ``AudioLDMPipeline`` and the DPM-Solver++ scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import Generator, SampleSpec
from gptfl_hpc.synth.generators.config import GeneratorConfig
from gptfl_hpc.synth.generators.runtime import (
    SAMPLE_RATE,
    apply_threads,
    diffusion_arguments,
    resolve_device,
    resolve_dtype,
    to_pcm16,
    use_dpm_solver,
)
from gptfl_hpc.synth.generators.weights import SAVED_CLASS, require_class, weights_revision

PIPELINE_CLASS = SAVED_CLASS["audioldm"]


class AudioLDMGenerator(Generator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``, each from its own seed and guidance scale."""

    kind = "audioldm"
    modality = "audio"
    dtype = np.dtype(np.int16)
    sample_rate = SAMPLE_RATE

    def __init__(self, config: GeneratorConfig, weights_dir: Path) -> None:
        super().__init__()
        from diffusers import AudioLDMPipeline

        require_class(weights_dir, PIPELINE_CLASS)
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

        self.seconds = config.audio_seconds
        self.length = int(round(self.seconds * SAMPLE_RATE))
        self.sample_shape = (self.length,)
        self.weights = config.weights
        self.revision = weights_revision(weights_dir)

    def raw_call(self, specs: Sequence[SampleSpec]) -> torch.Tensor:
        """The one pipeline call per batch: float waveforms ``(N, T)`` on the CPU."""
        return self.pipeline(audio_length_in_s=self.seconds, **diffusion_arguments(self.config, specs)).audios

    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        apply_threads(self.config)
        return to_pcm16(list(self.raw_call(specs)), self.length, specs, self.flagged)
