"""Text-to-speech with transformers' ``VitsModel`` (VITS, MMS-TTS): one utterance per sample,
its noise (durations and prior latents) drawn under the sample's own seed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import NO_GUIDANCE, SAMPLE_RATE, Generator, SampleSpec

if TYPE_CHECKING:
    import torch

    from gptfl_hpc.synth.generators.config import GeneratorConfig


class VitsGenerator(Generator):
    """Prompts -> int16 PCM ``(N, seconds * 16000)``: each utterance trimmed or padded with silence."""

    kind = "vits"
    modality = "speech"
    saved_classes = ("VitsModel",)
    default_seconds = 1.0  # Speech Commands clips
    dtype = np.dtype(np.int16)
    sample_rate = SAMPLE_RATE

    @classmethod
    def guidance_mode(cls, weights_dir: Optional[Path]) -> str:
        return NO_GUIDANCE

    def __init__(
        self, config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
    ) -> None:
        super().__init__()
        from transformers import VitsModel, VitsTokenizer

        from gptfl_hpc.synth.generators.runtime import apply_threads, resolve_device, resolve_dtype
        from gptfl_hpc.synth.generators.weights import require_class, weights_revision

        require_class(weights_dir, self.saved_classes)
        apply_threads(config)
        self.config = config
        self.device = resolve_device(config)
        self.torch_dtype = resolve_dtype(config, self.device)
        self.tokenizer = VitsTokenizer.from_pretrained(weights_dir)
        self.model = VitsModel.from_pretrained(weights_dir, dtype=self.torch_dtype).to(self.device).eval()
        if self.model.config.sampling_rate != SAMPLE_RATE:
            raise UserError(
                f"synth.model.weights: {weights_dir} makes {self.model.config.sampling_rate} Hz audio; the speech "
                f"datasets are {SAMPLE_RATE} Hz, use a {SAMPLE_RATE} Hz VITS checkpoint (MMS-TTS models are)"
            )
        self.length = int(round(config.audio_seconds * SAMPLE_RATE))
        self.sample_shape = (self.length,)
        self.weights = config.weights
        self.revision = weights_revision(weights_dir)

    def raw_call(self, specs: Sequence[SampleSpec]) -> list[torch.Tensor]:
        """One forward pass per sample, each under its own seed: float waveforms."""
        return [self.speak(spec) for spec in specs]

    def speak(self, spec: SampleSpec) -> torch.Tensor:
        import torch

        inputs = self.tokenizer(spec.prompt, return_tensors="pt")
        if inputs["input_ids"].shape[1] == 0:
            raise UserError(
                f"sample {spec.index}: the prompt {spec.prompt!r} has no character the VITS vocabulary knows; "
                "use prompts in the model's language"
            )
        # VITS draws its durations and latents from the global RNG: seed it per sample, and
        # restore the caller's stream afterwards.
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(spec.seed)
            return self.model(**{name: value.to(self.device) for name, value in inputs.items()}).waveform[0]

    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        from gptfl_hpc.synth.generators.runtime import apply_threads, to_pcm16

        apply_threads(self.config)
        return to_pcm16(self.raw_call(specs), self.length, specs, self.flagged)
