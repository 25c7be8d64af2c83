"""The guidance range the plan draws from: ``synth.guidance``, checked against how the generator
takes guidance (torch-free: it reads the weights' configs only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.config import SynthConfig
from gptfl_hpc.synth.generators.base import CLASSIFIER_FREE, DISTILLED, EMBEDDED
from gptfl_hpc.synth.generators.config import NAMED_WEIGHTS


def planned_guidance(synth: SynthConfig) -> tuple[float, float]:
    """``[lo, hi]`` for U[lo, hi] per sample. A null ``synth.guidance`` plans the model's own
    fixed value (recorded per sample like any other), which only guidance-distilled models allow;
    a range for a model distilled without guidance is refused."""
    model = synth.model
    generator = model.generator
    weights = _weights_folder(model.weights)
    mode = generator.guidance_mode(weights)
    if synth.guidance is None:
        if mode == CLASSIFIER_FREE:
            raise UserError(
                f"synth.guidance is null, but synth.model.kind {model.kind} takes classifier-free guidance; "
                "set synth.guidance to a range such as [1.0, 5.0] (null is for guidance-distilled models)"
            )
        value = generator.fixed_guidance(weights)
        return (value, value)
    if mode == DISTILLED:
        raise UserError(
            f"synth.guidance {list(synth.guidance)} is set, but the {model.kind} weights are guidance-distilled "
            "without embedded guidance (e.g. FLUX.1 schnell); set synth.guidance: null"
        )
    if mode == EMBEDDED:
        generator.check_embedded_guidance(synth.guidance)
    return (float(synth.guidance[0]), float(synth.guidance[1]))


def _weights_folder(weights: str) -> Optional[Path]:
    """The weights folder to read configs from; None for named weights ('tiny', 'demo')."""
    return None if weights in NAMED_WEIGHTS else Path(weights)
