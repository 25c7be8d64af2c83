"""Every generator family, by ``synth.model.kind``: the one place a new family is added.

Importing this is torch-free: the family modules import their libraries only when a generator
is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.audioldm2 import AudioLDM2Generator
from gptfl_hpc.synth.generators.base import Generator
from gptfl_hpc.synth.generators.flux import FluxGenerator
from gptfl_hpc.synth.generators.image import StableDiffusionGenerator
from gptfl_hpc.synth.generators.pixart import PixArtGenerator
from gptfl_hpc.synth.generators.saved import saved_class
from gptfl_hpc.synth.generators.sd3 import StableDiffusion3Generator
from gptfl_hpc.synth.generators.sdxl import StableDiffusionXLGenerator
from gptfl_hpc.synth.generators.sound import AudioLDMGenerator
from gptfl_hpc.synth.generators.speech import SpeechT5Generator
from gptfl_hpc.synth.generators.stable_audio import StableAudioGenerator
from gptfl_hpc.synth.generators.vits import VitsGenerator

GENERATORS: dict[str, type[Generator]] = {
    cls.kind: cls
    for cls in (
        StableDiffusionGenerator,
        StableDiffusionXLGenerator,
        StableDiffusion3Generator,
        PixArtGenerator,
        FluxGenerator,
        SpeechT5Generator,
        VitsGenerator,
        AudioLDMGenerator,
        AudioLDM2Generator,
        StableAudioGenerator,
    )
}

#: ``synth.model.kind: auto``: the family whose weights these are.
AUTO = "auto"
#: The family ``auto`` means for the named weights ('tiny', 'demo'), which have no folder to read.
DEFAULT_KIND = StableDiffusionGenerator.kind

KIND_OF_CLASS = {name: kind for kind, cls in GENERATORS.items() for name in cls.saved_classes}
SUPPORTED_CLASSES = ", ".join(KIND_OF_CLASS)


def generator_class(kind: str) -> type[Generator]:
    return GENERATORS[kind]


def kind_of_saved_class(name: Optional[str]) -> Optional[str]:
    """The kind whose weights are saved as ``name``; None for classes no generator loads."""
    return KIND_OF_CLASS.get(name or "")


def kind_of_weights(directory: Path) -> Optional[str]:
    """The kind of a weights folder, from its ``model_index.json`` or ``config.json``; None when
    the folder is missing, unreadable or of an unsupported class (the weights checks say which)."""
    try:
        return kind_of_saved_class(saved_class(Path(directory))) if Path(directory).is_dir() else None
    except UserError:
        return None
