"""One small interface for every generator: planned samples in, a batch of array samples out.

A generator class also describes itself (kind, modality, the classes its weights are saved as,
how it takes guidance), so the registry needs no table beside the classes. Family modules import
torch, diffusers and transformers only when a generator is built: describing one stays torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from gptfl_hpc.synth.generators.config import GeneratorConfig

#: How a family takes guidance: a classifier-free scale per sample; a guidance value embedded in
#: a guidance-distilled model (FLUX dev); none, being distilled without it (FLUX schnell), so a
#: ``synth.guidance`` range is refused; or none by design (text-to-speech), where it is recorded only.
CLASSIFIER_FREE, EMBEDDED, DISTILLED, NO_GUIDANCE = "classifier-free", "embedded", "distilled", "none"

#: The audio datasets' rate (Speech Commands, ESC-50 as read): audio generators must make it.
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class SampleSpec:
    """What the plan says about one sample; nothing else decides its content."""

    index: int
    label: int
    prompt: str
    seed: int
    guidance: float
    speaker: int = -1  # speecht5: row of the x-vector table; -1 for other generators


class Generator(ABC):
    """A loaded pipeline. ``generate`` returns ``len(specs)`` samples stacked along axis 0.

    Images are uint8 ``(N, H, W, 3)``; speech and sound are int16 PCM ``(N, T)`` at
    ``sample_rate``. A sample's content depends only on its spec (its own seeded CPU generator),
    never on the other samples of the batch.
    """

    kind: ClassVar[str]
    modality: ClassVar[str]
    #: The classes ``save_pretrained`` records for this family's weights (``model_index.json``'s
    #: ``_class_name`` or a transformers config's ``architectures``).
    saved_classes: ClassVar[tuple[str, ...]]
    #: Audio length when ``synth.model.seconds`` is null (Speech Commands 1 s, ESC-50 5 s).
    default_seconds: ClassVar[float] = 0.0
    needs_vocoder: ClassVar[bool] = False
    has_speakers: ClassVar[bool] = False

    sample_shape: tuple[int, ...]
    dtype: np.dtype
    sample_rate: Optional[int] = None
    weights: str = ""  # the configured weights (a path or "tiny"), recorded in shard attributes
    revision: str = ""  # a short fingerprint of the weights' files, recorded in shard attributes

    def __init__(self) -> None:
        self.flagged: list[tuple[int, str]] = []  # (sample index, problem) for NaN / all-black outputs

    def _start(self, config: GeneratorConfig, weights_dir: Path, vocoder_dir: Optional[Path] = None) -> None:
        """What every family does before loading its pipeline: refuse weights (and a vocoder, when
        given) saved as another class, apply the thread settings, and set ``config``, ``device``,
        ``torch_dtype``, ``weights`` and ``revision`` (the fingerprint of the weights and vocoder)."""
        from gptfl_hpc.synth.generators.runtime import apply_threads, resolve_device, resolve_dtype
        from gptfl_hpc.synth.generators.weights import VOCODER_CLASS, require_class, weights_revision

        require_class(weights_dir, self.saved_classes)
        folders = [weights_dir]
        if vocoder_dir is not None:
            require_class(vocoder_dir, VOCODER_CLASS, key="synth.model.vocoder")
            folders.append(vocoder_dir)
        apply_threads(config)
        self.config = config
        self.device = resolve_device(config)
        self.torch_dtype = resolve_dtype(config, self.device)
        self.weights = config.weights
        self.revision = weights_revision(*folders)

    @classmethod
    def guidance_mode(cls, weights_dir: Optional[Path]) -> str:
        """How these weights take guidance (read from their configs, never their tensors)."""
        return CLASSIFIER_FREE

    @classmethod
    def fixed_guidance(cls, weights_dir: Optional[Path]) -> float:
        """The guidance recorded per sample when ``synth.guidance`` is null."""
        return 0.0

    @classmethod
    def check_saved(cls, config: GeneratorConfig, weights_dir: Path) -> None:
        """Refuse saved weights this family cannot load as configured (reads index files only)."""

    @classmethod
    def check_embedded_guidance(cls, guidance: tuple[float, float]) -> None:
        """Refuse a ``synth.guidance`` range outside what an embedded-guidance model was distilled on."""

    @abstractmethod
    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        """The samples for ``specs``, in order."""

    def generate_each(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        """The samples for ``specs``, each made by a pipeline call of its own: a matrix product's
        rounding depends on how many rows it multiplies, so a sample made alone has bytes that
        depend only on its spec and the weights (``synth.model.batch_invariant``)."""
        return np.concatenate([self.generate([spec]) for spec in specs])


class AudioGenerator(Generator):
    """What the speech and sound families share: int16 PCM clips of ``seconds`` at the datasets'
    rate, made from the float waveforms of ``raw_call``."""

    dtype = np.dtype(np.int16)
    sample_rate = SAMPLE_RATE

    def _set_clip(self, seconds: float) -> None:
        """Every clip is ``seconds`` long: ``length`` samples at ``SAMPLE_RATE``."""
        self.seconds = seconds
        self.length = int(round(seconds * SAMPLE_RATE))
        self.sample_shape = (self.length,)

    @abstractmethod
    def raw_call(self, specs: Sequence[SampleSpec]) -> Any:
        """Float waveforms at ``SAMPLE_RATE``, one per spec (a list of tensors or an ``(N, T)`` tensor)."""

    def generate(self, specs: Sequence[SampleSpec]) -> np.ndarray:
        from gptfl_hpc.synth.generators.runtime import apply_threads, to_pcm16

        apply_threads(self.config)
        return to_pcm16(list(self.raw_call(specs)), self.length, specs, self.flagged)
