"""The ``synth.model`` config section: which generative model makes the samples, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from gptfl_hpc.schema import Section, added
from gptfl_hpc.synth.generators.base import Generator
from gptfl_hpc.synth.generators.registry import AUTO, DEFAULT_KIND, GENERATORS, SUPPORTED_CLASSES, kind_of_weights

GeneratorKind = Literal[(AUTO, *GENERATORS)]  # type: ignore[valid-type]


#: ``synth.model.weights`` values that name weights instead of a directory: a tiny random model
#: built on demand, and the demo generator shipped in the package.
NAMED_WEIGHTS = ("tiny", "demo")


class GeneratorConfig(Section):
    """A generator loaded with ``from_pretrained(<local dir>)``; ``tiny`` builds a random one offline."""

    kind: GeneratorKind = Field(
        AUTO, description=f"generator family; auto reads the weights' model_index.json or config.json "
        f"(supported: {SUPPORTED_CLASSES}); 'tiny' and 'demo' weights are {DEFAULT_KIND}"
    )
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
    batch_size: int = Field(8, ge=1, description="samples per generator step; with batch_invariant, only how many "
                            "a step hands over (then not part of the run's identity)")
    num_threads: Optional[int] = Field(None, ge=1, description="CPU threads per task; fix it for bit-identical CPU output")
    text_encoder_3: bool = added(
        True, description="sd3: load the T5 text encoder; false runs without it (text_encoder_3=None)"
    )
    compile: bool = added(False, description="torch.compile the denoiser (UNet / transformer); channels_last on CUDA")
    batch_invariant: bool = added(
        False, description="make every sample in a pipeline call of its own, so its bytes never depend on batch_size "
        "(slower: batching is where the throughput is)"
    )

    @field_validator("weights", "vocoder", "speakers")
    @classmethod
    def _absolute(cls, value):
        # Jobs may start in another working directory (or on another node): resolve paths at load.
        if value is None or value in NAMED_WEIGHTS:
            return value
        path = Path(value).expanduser().absolute()
        return path if isinstance(value, Path) else str(path)

    @model_validator(mode="after")
    def _resolve_auto(self) -> "GeneratorConfig":
        # The resolved kind is what the run's identity records, so 'auto' and the kind it names
        # are the same run. Weights that cannot be read stay 'auto' here; the weights checks then
        # refuse them with the reason (missing folder, unsupported class, unreadable index).
        if self.kind == AUTO:
            kind = DEFAULT_KIND if self.weights in NAMED_WEIGHTS else kind_of_weights(Path(self.weights))
            if kind is not None:
                object.__setattr__(self, "kind", kind)
        return self

    def operational_now(self) -> tuple[str, ...]:
        # One sample per pipeline call: the batch size then only groups the calls of a step.
        return ("batch_size",) if self.batch_invariant else ()

    @property
    def generator(self) -> "type[Generator]":
        """The generator class of ``kind``; 'auto' left unresolved raises the weights' problem."""
        if self.kind == AUTO:
            from gptfl_hpc.synth.generators.weights import require_supported

            require_supported(Path(self.weights))
        return GENERATORS[self.kind]

    @property
    def modality(self) -> str:
        return self.generator.modality

    @property
    def audio_seconds(self) -> float:
        return self.seconds if self.seconds is not None else self.generator.default_seconds
