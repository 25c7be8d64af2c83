"""Images or audio: what each generator makes, each model consumes and each dataset holds.

A run's generator, downstream model and private dataset must agree on this, or synthesis would
make samples pretraining cannot read and federation would feed the model the wrong kind of input.
Speech and sound both become log-mel features, so both count as audio here.
"""

from __future__ import annotations

from typing import Optional, get_args

from gptfl_hpc.config import Config
from gptfl_hpc.data.registry import dataset_names, dataset_reader
from gptfl_hpc.errors import UserError
from gptfl_hpc.models.config import ModelName
from gptfl_hpc.synth.generators.registry import GENERATORS

#: Models that take log-mel features; every other model takes images.
AUDIO_MODELS = ("audio_crnn",)

_PLURAL = {"image": "images", "audio": "audio"}


def input_kind(modality: str) -> str:
    """``image`` or ``audio``: what a model consumes (speech and sound both become log-mel)."""
    return "image" if modality == "image" else "audio"


def model_input_kind(model_name: str) -> str:
    return "audio" if model_name in AUDIO_MODELS else "image"


def _choices(key: str, kind: str) -> list[str]:
    """The values of ``key`` (``synth.model.kind``, ``model.name`` or ``data.dataset``) for ``kind`` input."""
    if key == "synth.model.kind":
        return [name for name, cls in GENERATORS.items() if input_kind(cls.modality) == kind]
    if key == "model.name":
        return [name for name in get_args(ModelName) if model_input_kind(name) == kind]
    readers = [dataset_reader(name) for name in dataset_names()]
    return [r.name for r in readers if callable(r.modality) or input_kind(r.modality) == kind]


def dataset_input_kind(config: Config) -> Optional[str]:
    """``image`` or ``audio`` for ``data.dataset``; None while a folder or hf dataset's files are not
    there to tell (the dataset's own check then names the root)."""
    modality = dataset_reader(config.data.dataset).modality_of(config.data)
    return None if modality is None else input_kind(modality)


def require_same_input(config: Config, first: str, second: str) -> None:
    """Refuse two of ``synth.model.kind``, ``model.name`` and ``data.dataset`` of which one is for
    images and the other for audio."""
    kinds = {
        "synth.model.kind": (config.synth.model.kind, input_kind(config.synth.model.modality)),
        "model.name": (config.model.name, model_input_kind(config.model.name)),
        "data.dataset": (config.data.dataset, dataset_input_kind(config) if "data.dataset" in (first, second) else None),
    }
    (value, kind), (other, other_kind) = kinds[first], kinds[second]
    if kind is not None and other_kind is not None and kind != other_kind:
        raise UserError(
            f"{first} {value} is for {_PLURAL[kind]} but {second} {other} is for {_PLURAL[other_kind]}; "
            f"set {first} to {_one_of(_choices(first, other_kind))}, "
            f"or {second} to {_one_of(_choices(second, kind))}"
        )


def _one_of(names: list[str]) -> str:
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
