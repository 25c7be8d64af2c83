"""Generators: planned samples in, arrays out, from any local ``from_pretrained`` directory.

``resolve_weights`` says where the weights are (building the tiny ones on demand);
``load_generator`` loads the configured kind; every generator implements ``Generator.generate``
and exposes ``raw_call``, the bare pipeline call(s) ``generate`` makes, for overhead benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import Generator, SampleSpec
from gptfl_hpc.synth.generators.config import GeneratorConfig
from gptfl_hpc.synth.generators.weights import check_weights, resolve_weights, weights_revision

__all__ = [
    "Generator",
    "check_weights",
    "GeneratorConfig",
    "SampleSpec",
    "load_generator",
    "num_speakers",
    "resolve_weights",
    "weights_revision",
]


def load_generator(
    config: GeneratorConfig, image_size: int, weights_dir: Path, vocoder_dir: Optional[Path] = None
) -> Generator:
    """The generator ``config.kind`` over ``weights_dir`` (see ``resolve_weights``).

    ``image_size`` is the side of the stored images (the real dataset's); audio generators ignore it.
    """
    weights_dir = Path(weights_dir)
    if config.kind == "stable_diffusion":
        from gptfl_hpc.synth.generators.image import StableDiffusionGenerator

        return StableDiffusionGenerator(config, image_size, weights_dir)
    if config.kind == "speecht5":
        from gptfl_hpc.synth.generators.speech import SpeechT5Generator

        if vocoder_dir is None:
            raise UserError("synth.model.vocoder is not set; SpeechT5 needs a SpeechT5HifiGan vocoder directory")
        return SpeechT5Generator(config, weights_dir, Path(vocoder_dir))
    if config.kind == "audioldm":
        from gptfl_hpc.synth.generators.sound import AudioLDMGenerator

        return AudioLDMGenerator(config, weights_dir)
    raise UserError(f"synth.model.kind {config.kind!r} is unknown; use stable_diffusion, speecht5 or audioldm")


def num_speakers(config: GeneratorConfig) -> int:
    """Rows of the x-vector table the plan draws speakers from; 0 for generators without speakers."""
    if config.kind != "speecht5":
        return 0
    from gptfl_hpc.synth.generators.speakers import load_speakers

    return int(load_speakers(config).shape[0])
