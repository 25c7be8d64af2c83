"""Text-to-audio with diffusers' ``AudioLDM2Pipeline`` and the DPM-Solver++ scheduler: CLAP and
T5 prompts, GPT-2-generated conditioning, one waveform per prompt (no CLAP re-ranking), one
sample per pipeline call. Loaded and checked as AudioLDM is (``sound``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from gptfl_hpc.synth.generators.base import SampleSpec
from gptfl_hpc.synth.generators.sound import AudioLDMGenerator

if TYPE_CHECKING:
    import torch


class AudioLDM2Generator(AudioLDMGenerator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``, each from its own seed and guidance scale."""

    kind = "audioldm2"
    saved_classes = ("AudioLDM2Pipeline",)
    family_name = "AudioLDM 2"

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
