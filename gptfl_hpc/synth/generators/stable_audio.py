"""Text-to-audio with diffusers' ``StableAudioPipeline`` (Stable Audio Open): stereo audio at the
model's rate, made mono and resampled to the datasets' 16 kHz."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import SAMPLE_RATE, AudioGenerator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class StableAudioGenerator(AudioGenerator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``, each from its own seed and guidance scale."""

    kind = "stable_audio"
    modality = "audio"
    saved_classes = ("StableAudioPipeline",)
    default_seconds = 5.0  # ESC-50 clips

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        from diffusers import StableAudioPipeline

        from gptfl_hpc.synth.generators.runtime import compile_denoiser

        self._start(config, weights_dir)
        pipeline = StableAudioPipeline.from_pretrained(weights_dir, dtype=self.torch_dtype)
        pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline.to(self.device)
        compile_denoiser(self.pipeline, "transformer", config, self.device)
        self.model_rate = int(pipeline.vae.config.sampling_rate)
        longest = pipeline.transformer.config.sample_size * pipeline.vae.hop_length / self.model_rate
        self._set_clip(config.audio_seconds)
        if self.seconds > longest:
            raise UserError(
                f"synth.model.seconds {self.seconds} is longer than the {longest:.2f} s {weights_dir} makes; "
                f"set synth.model.seconds to at most {longest:.2f}"
            )

    def raw_call(self, specs: Sequence[SampleSpec]) -> torch.Tensor:
        """The one pipeline call per batch: float waveforms ``(N, channels, T)`` at the model's rate."""
        from gptfl_hpc.synth.generators.runtime import diffusion_arguments

        arguments = diffusion_arguments(self.config, specs)
        return self.pipeline(audio_end_in_s=self.seconds, **arguments).audios

    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        import torchaudio

        from gptfl_hpc.synth.generators.runtime import apply_threads, to_pcm16

        apply_threads(self.config)
        mono = self.raw_call(specs).float().mean(dim=1)  # the datasets are mono
        if self.model_rate != SAMPLE_RATE:
            mono = torchaudio.functional.resample(mono, self.model_rate, SAMPLE_RATE)
        return to_pcm16(list(mono), self.length, specs, self.flagged)
