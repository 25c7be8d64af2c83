"""The ``synth.model`` config section: which generative model makes the samples, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from gptfl_hpc.schema import Section

GeneratorKind = Literal["stable_diffusion", "speecht5", "audioldm"]

#: The modality of the samples each generator makes (the shards' ``modality`` attribute).
MODALITY = {"stable_diffusion": "image", "speecht5": "speech", "audioldm": "audio"}

#: Default clip length per audio generator: Speech Commands clips are 1 s, ESC-50 clips 5 s.
DEFAULT_SECONDS = {"speecht5": 1.0, "audioldm": 5.0}


#: ``synth.model.weights`` values that name weights instead of a directory: a tiny random model
#: built on demand, and the demo generator shipped in the package.
NAMED_WEIGHTS = ("tiny", "demo")


class GeneratorConfig(Section):
    """A generator loaded with ``from_pretrained(<local dir>)``; ``tiny`` builds a random one offline."""

    kind: GeneratorKind = "stable_diffusion"
    weights: str = Field(
        "tiny", description="local directory for from_pretrained, 'tiny' for a tiny random model, or 'demo' for the "
        "shipped demo generator (stable_diffusion only)"
    )
    vocoder: Optional[str] = Field(None, description="speecht5: HiFi-GAN directory; null = tiny with tiny weights")
    speakers: Optional[Path] = Field(None, description="speecht5: .npy of (S, 512) x-vectors; null = shipped tiny set")
    steps: int = Field(25, ge=1, description="denoising steps (DPM-Solver++)")
    resolution: Optional[int] = Field(None, ge=8, description="image generation size; null = the model's own")
    seconds: Optional[float] = Field(None, gt=0, description="audio length; null = 1 s speech, 5 s sound")
    negative_prompt: Optional[str] = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(8, ge=1)
    num_threads: Optional[int] = Field(None, ge=1, description="CPU threads per task; fix it for bit-identical CPU output")

    @field_validator("weights", "vocoder", "speakers")
    @classmethod
    def _absolute(cls, value):
        # Jobs may start in another working directory (or on another node): resolve paths at load.
        if value is None or value in NAMED_WEIGHTS:
            return value
        path = Path(value).expanduser().absolute()
        return path if isinstance(value, Path) else str(path)

    @property
    def modality(self) -> str:
        return MODALITY[self.kind]

    @property
    def audio_seconds(self) -> float:
        return self.seconds if self.seconds is not None else DEFAULT_SECONDS.get(self.kind, 0.0)
