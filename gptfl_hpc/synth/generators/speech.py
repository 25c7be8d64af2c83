"""Text-to-speech with transformers' SpeechT5, a HiFi-GAN vocoder and speaker x-vectors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import NO_GUIDANCE, SAMPLE_RATE, AudioGenerator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class SpeechT5Generator(AudioGenerator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``; sample i speaks with x-vector ``spec.speaker``."""

    kind = "speecht5"
    modality = "speech"
    saved_classes = ("SpeechT5ForTextToSpeech",)
    default_seconds = 1.0  # Speech Commands clips
    needs_vocoder = True
    has_speakers = True

    @classmethod
    def guidance_mode(cls, weights_dir: Optional[Path]) -> str:
        return NO_GUIDANCE

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        import torch
        from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Processor

        from gptfl_hpc.synth.generators.speakers import load_speakers

        if vocoder_dir is None:
            raise UserError("synth.model.vocoder is not set; SpeechT5 needs a SpeechT5HifiGan vocoder directory")
        self._start(config, weights_dir, vocoder_dir)
        self.processor = SpeechT5Processor.from_pretrained(weights_dir)
        self.model = SpeechT5ForTextToSpeech.from_pretrained(weights_dir, dtype=self.torch_dtype)
        self.model.to(self.device).eval()
        self.vocoder = SpeechT5HifiGan.from_pretrained(vocoder_dir, dtype=self.torch_dtype)
        self.vocoder.to(self.device).eval()
        if self.vocoder.config.sampling_rate != SAMPLE_RATE:
            raise UserError(
                f"synth.model.vocoder: {vocoder_dir} makes {self.vocoder.config.sampling_rate} Hz audio; "
                f"the speech datasets are {SAMPLE_RATE} Hz, use a {SAMPLE_RATE} Hz SpeechT5HifiGan"
            )
        if self.vocoder.config.model_in_dim != self.model.config.num_mel_bins:
            raise UserError(
                f"synth.model.vocoder: {vocoder_dir} reads {self.vocoder.config.model_in_dim} mel bins but the "
                f"SpeechT5 model makes {self.model.config.num_mel_bins}; use the vocoder that belongs to the model"
            )
        table = load_speakers(config, self.model.config.speaker_embedding_dim)
        self.speakers = torch.from_numpy(table).to(self.device, self.torch_dtype)
        self.num_speakers = table.shape[0]

        self._set_clip(config.audio_seconds)
        hop = math.prod(self.vocoder.config.upsample_rates)  # waveform samples per mel frame
        # Decoder steps (each makes reduction_factor frames) that cover the clip: generating past
        # it would be trimmed anyway, so it caps every utterance.
        self.max_steps = math.ceil(math.ceil(self.length / hop) / self.model.config.reduction_factor)

    def raw_call(self, specs: Sequence[SampleSpec]) -> list[torch.Tensor]:
        """One ``generate_speech`` call per sample, each under its own seed: float waveforms."""
        return [self.speak(spec) for spec in specs]

    def speak(self, spec: SampleSpec) -> torch.Tensor:
        import torch

        from gptfl_hpc.synth.generators.runtime import global_rng_seeded
        from gptfl_hpc.synth.generators.speakers import speakers_path

        if not 0 <= spec.speaker < self.num_speakers:
            raise UserError(
                f"sample {spec.index} asks for speaker {spec.speaker}, but {speakers_path(self.config)} holds "
                f"{self.num_speakers} x-vectors (0..{self.num_speakers - 1}); plan speakers from that table"
            )
        inputs = self.processor(
            text=spec.prompt, return_tensors="pt", truncation=True, max_length=self.model.config.max_text_positions
        )
        input_ids = inputs["input_ids"].to(self.device)
        # generate_speech stops at int(tokens * maxlenratio / reduction_factor) steps; the +0.5
        # keeps float rounding from losing the last step.
        maxlenratio = (self.max_steps + 0.5) * self.model.config.reduction_factor / input_ids.shape[1]
        # SpeechT5's decoder prenet applies dropout even in eval mode (Tacotron 2's trick), drawn
        # from the global RNG: seed it per sample, and restore the caller's stream afterwards.
        with global_rng_seeded(spec.seed, self.device), torch.no_grad():
            return self.model.generate_speech(
                input_ids,
                self.speakers[spec.speaker : spec.speaker + 1],
                vocoder=self.vocoder,
                minlenratio=0.0,
                maxlenratio=maxlenratio,
            )
