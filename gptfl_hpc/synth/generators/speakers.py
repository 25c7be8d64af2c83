"""The speaker x-vector table SpeechT5 speaks with: one row per speaker, chosen per sample by the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.config import GeneratorConfig
from gptfl_hpc.synth.tiny import TINY_XVECTORS


def speakers_path(config: GeneratorConfig) -> Path:
    """``synth.model.speakers``, or the tiny table shipped in the package when it is null."""
    return Path(config.speakers).expanduser() if config.speakers is not None else TINY_XVECTORS


def load_speakers(config: GeneratorConfig, width: Optional[int] = None) -> np.ndarray:
    """The ``(S, width)`` float32 x-vector table; a missing file or a wrong shape is a ``UserError``."""
    path = speakers_path(config)
    if not path.is_file():
        raise UserError(
            f"synth.model.speakers: {path} does not exist; point it at a .npy of (S, 512) speaker x-vectors "
            "(e.g. CMU ARCTIC x-vectors) or leave it null for the shipped tiny set"
        )
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"synth.model.speakers: {path} is not a readable .npy array ({exc}); save it with numpy.save"
        ) from exc
    if table.ndim != 2 or table.shape[0] < 1 or (width is not None and table.shape[1] != width):
        raise UserError(
            f"synth.model.speakers: {path} has shape {table.shape}, expected (S, {width or 'D'}) with S >= 1 "
            "(one x-vector per row, as wide as the model's speaker_embedding_dim)"
        )
    if not np.issubdtype(table.dtype, np.floating) or not np.isfinite(table).all():
        raise UserError(
            f"synth.model.speakers: {path} must hold finite floating-point x-vectors ({table.dtype} given)"
        )
    return table.astype(np.float32)
