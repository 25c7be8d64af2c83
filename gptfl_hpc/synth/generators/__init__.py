"""Generators: planned samples in, arrays out, from any local ``from_pretrained`` directory.

``resolve_weights`` says where the weights are (building the tiny ones on demand);
``load_generator`` loads the configured kind; every generator implements ``Generator.generate``
and exposes ``raw_call``, the bare pipeline call(s) ``generate`` makes, for overhead benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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
    return config.generator(config, image_size, Path(weights_dir), None if vocoder_dir is None else Path(vocoder_dir))


def num_speakers(config: GeneratorConfig) -> int:
    """Rows of the x-vector table the plan draws speakers from; 0 for generators without speakers."""
    if not config.generator.has_speakers:
        return 0
    from gptfl_hpc.synth.generators.speakers import load_speakers

    return int(load_speakers(config).shape[0])
