"""Text-to-audio with diffusers' ``AudioLDM2Pipeline`` and the DPM-Solver++ scheduler: CLAP and
T5 prompts, GPT-2-generated conditioning, one waveform per prompt (no CLAP re-ranking), one
sample per pipeline call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import SAMPLE_RATE, AudioGenerator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class AudioLDM2Generator(AudioGenerator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``, each from its own seed and guidance scale."""

    kind = "audioldm2"
    modality = "audio"
    saved_classes = ("AudioLDM2Pipeline",)
    default_seconds = 5.0  # ESC-50 clips

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        from diffusers import AudioLDM2Pipeline

        from gptfl_hpc.synth.generators.runtime import compile_denoiser, use_dpm_solver

        self._start(config, weights_dir)
        pipeline = AudioLDM2Pipeline.from_pretrained(weights_dir, dtype=self.torch_dtype)
        if pipeline.vocoder.config.sampling_rate != SAMPLE_RATE:
            raise UserError(
                f"synth.model.weights: {weights_dir} makes {pipeline.vocoder.config.sampling_rate} Hz audio; "
                f"the sound datasets are {SAMPLE_RATE} Hz, use a {SAMPLE_RATE} Hz AudioLDM 2 checkpoint"
            )
        self.pipeline = use_dpm_solver(pipeline, self.device)
        compile_denoiser(self.pipeline, "unet", config, self.device)
        self._set_clip(config.audio_seconds)

    def raw_call(self, specs: Sequence[SampleSpec]) -> list[torch.Tensor]:
        """One pipeline call per sample: float waveforms. AudioLDM 2 pads its T5 prompts to the
        batch's longest and GPT-2 places its generated vectors after that padding, so in a batch
        a sample would depend on its neighbours' prompts."""
        from gptfl_hpc.synth.generators.runtime import diffusion_arguments

        waves = []
        for spec in specs:
            arguments = {**diffusion_arguments(self.config, [spec]), "output_type": "pt"}
            waves.append(self.pipeline(audio_length_in_s=self.seconds, **arguments).audios[0])
        return waves
