"""Text-to-audio with diffusers' ``AudioLDMPipeline`` and the DPM-Solver++ scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import SAMPLE_RATE, AudioGenerator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class AudioLDMGenerator(AudioGenerator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``, each from its own seed and guidance scale."""

    kind = "audioldm"
    modality = "audio"
    saved_classes = ("AudioLDMPipeline",)
    default_seconds = 5.0  # ESC-50 clips
    #: The family's name in messages.
    family_name = "AudioLDM"

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        import diffusers

        from gptfl_hpc.synth.generators.runtime import compile_denoiser, use_dpm_solver

        self._start(config, weights_dir)
        pipeline_class = getattr(diffusers, self.saved_classes[0])
        pipeline = pipeline_class.from_pretrained(weights_dir, dtype=self.torch_dtype)
        if pipeline.vocoder.config.sampling_rate != SAMPLE_RATE:
            raise UserError(
                f"synth.model.weights: {weights_dir} makes {pipeline.vocoder.config.sampling_rate} Hz audio; "
                f"the sound datasets are {SAMPLE_RATE} Hz, use a {SAMPLE_RATE} Hz {self.family_name} checkpoint"
            )
        self.pipeline = use_dpm_solver(pipeline, self.device)
        compile_denoiser(self.pipeline, "unet", config, self.device)
        self._set_clip(config.audio_seconds)

    def raw_call(self, specs: Sequence[SampleSpec]) -> torch.Tensor:
        """The one pipeline call per batch: float waveforms ``(N, T)`` on the CPU."""
        from gptfl_hpc.synth.generators.runtime import diffusion_arguments

        return self.pipeline(audio_length_in_s=self.seconds, **diffusion_arguments(self.config, specs)).audios
