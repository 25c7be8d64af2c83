"""The score kinds: which modality each scores, which saved class it loads, and where its model is.

Torch-free: the synthesis check resolves and checks the score model before anything is submitted,
reading only the saved ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.synth.generators.weights import saved_class
from gptfl_hpc.synth.scoring.config import ScoreConfig


@dataclass(frozen=True)
class ScoreFamily:
    """A contrastive text-sample model: the transformers class it is saved as and what it scores."""

    name: str
    saved_class: str  # also the class ``from_pretrained`` loads, with ``processor_class``
    processor_class: str
    modalities: tuple[str, ...]


#: The model families a score can come from, by ``synth.score.kind``.
FAMILIES = {
    "clip": ScoreFamily("clip", "CLIPModel", "CLIPProcessor", ("image",)),
    "clap": ScoreFamily("clap", "ClapModel", "ClapProcessor", ("speech", "audio")),
}
#: ``tiny`` is the family that scores the generator's modality, built on demand into ``RUN/weights``.
TINY = "tiny"


def family_for(config: ScoreConfig, modality: str) -> ScoreFamily:
    """The family ``config.kind`` names (or, for ``tiny``, the one for ``modality``); one line when
    it cannot score ``modality``."""
    fitting = next((family for family in FAMILIES.values() if modality in family.modalities), None)
    if fitting is None:
        raise UserError(f"synth.score: no score kind scores {modality} samples; set synth.score to null")
    if config.kind == TINY:
        return fitting
    family = FAMILIES[config.kind]
    if family is not fitting:
        raise UserError(
            f"synth.score.kind {config.kind} scores {'/'.join(family.modalities)} samples, but the generator makes "
            f"{modality}; use kind {fitting.name} with a local {fitting.saved_class} directory (or kind tiny)"
        )
    return family


def score_model_dir(config: ScoreConfig, family: ScoreFamily, run_dir: Path) -> Path:
    """Where the score model is; ``tiny`` names ``RUN/weights/tiny-score-<family>`` (built by
    ``ensure_score_model``)."""
    if config.kind == TINY:
        return RunLayout(Path(run_dir).resolve()).weights / f"tiny-score-{family.name}"
    return Path(str(config.model)).expanduser().resolve()


def check_score_model(config: ScoreConfig, modality: str, run_dir: Path) -> ScoreFamily:
    """Refuse a score model of the wrong modality or class, or a missing one, reading only its config."""
    family = family_for(config, modality)
    if config.kind != TINY:  # tiny is built by the first task, never missing
        _require_saved(score_model_dir(config, family, run_dir), family)
    return family


def _require_saved(directory: Path, family: ScoreFamily) -> None:
    how = (f"point synth.score.model at a local {family.saved_class} directory written by save_pretrained "
           "(with its processor), or use kind tiny")
    if not directory.is_dir():
        raise UserError(f"synth.score.model: {directory} is not a directory; {how}")
    found = saved_class(directory)
    if found is None:
        raise UserError(f"synth.score.model: {directory} holds no config.json, so it is no saved model; {how}")
    if found != family.saved_class:
        other = next((f for f in FAMILIES.values() if f.saved_class == found), None)
        scores = f", which scores {'/'.join(other.modalities)} samples" if other else ""
        raise UserError(
            f"synth.score.model: {directory} holds a {found}{scores}, but synth.score.kind {family.name} needs a "
            f"{family.saved_class}; {how}"
        )


def ensure_score_model(config: ScoreConfig, modality: str, run_dir: Path) -> tuple[ScoreFamily, Path]:
    """The checked family and model directory, building the tiny model when the config asks for it."""
    family = check_score_model(config, modality, run_dir)
    directory = score_model_dir(config, family, run_dir)
    if config.kind == TINY:
        from gptfl_hpc.synth.scoring.tiny import ensure_tiny_score_model

        ensure_tiny_score_model(family.name, directory)
    return family, directory
