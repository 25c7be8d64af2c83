"""Text-to-speech with transformers' ``VitsModel`` (VITS, MMS-TTS): one utterance per sample,
its noise (durations and prior latents) drawn under the sample's own seed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import NO_GUIDANCE, SAMPLE_RATE, AudioGenerator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class VitsGenerator(AudioGenerator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``: each utterance trimmed or padded with silence."""

    kind = "vits"
    modality = "speech"
    saved_classes = ("VitsModel",)
    default_seconds = 1.0  # Speech Commands clips

    @classmethod
    def guidance_mode(cls, weights_dir: Optional[Path]) -> str:
        return NO_GUIDANCE

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        from transformers import VitsModel, VitsTokenizer

        self._start(config, weights_dir)
        self.tokenizer = VitsTokenizer.from_pretrained(weights_dir)
        self.model = VitsModel.from_pretrained(weights_dir, dtype=self.torch_dtype).to(self.device).eval()
        if self.model.config.sampling_rate != SAMPLE_RATE:
            raise UserError(
                f"synth.model.weights: {weights_dir} makes {self.model.config.sampling_rate} Hz audio; the speech "
                f"datasets are {SAMPLE_RATE} Hz, use a {SAMPLE_RATE} Hz VITS checkpoint (MMS-TTS models are)"
            )
        self._set_clip(config.audio_seconds)

    def raw_call(self, specs: Sequence[SampleSpec]) -> list[torch.Tensor]:
        """One forward pass per sample, each under its own seed: float waveforms."""
        return [self.speak(spec) for spec in specs]

    def speak(self, spec: SampleSpec) -> torch.Tensor:
        import torch

        from gptfl_hpc.synth.generators.runtime import global_rng_seeded

        inputs = self.tokenizer(spec.prompt, return_tensors="pt")
        if inputs["input_ids"].shape[1] == 0:
            raise UserError(
                f"sample {spec.index}: the prompt {spec.prompt!r} has no character the VITS vocabulary knows; "
                "use prompts in the model's language"
            )
        # VITS draws its durations and latents from the global RNG: seed it per sample, and
        # restore the caller's stream afterwards.
        with global_rng_seeded(spec.seed, self.device), torch.no_grad():
            return self.model(**{name: value.to(self.device) for name, value in inputs.items()}).waveform[0]
