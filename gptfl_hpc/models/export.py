"""A trained downstream model as one safetensors file: the hand-off between stages.

The pretrain stage writes ``RUN/pretrain/model.safetensors``; the federate stage starts from it
(that is GPT-FL) and writes ``RUN/federate/model.safetensors`` the same way. The file's metadata
holds the run's label names and the ``model`` config section, so a loader can tell a file made for
another label set or architecture and say so instead of loading mismatched weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from torch import nn

from gptfl_hpc.durable import save_tensors
from gptfl_hpc.errors import UserError

PathLike = Union[str, Path]


def save_model(path: PathLike, model: nn.Module, labels: Sequence[str], model_config: dict[str, Any]) -> None:
    """Atomically write ``model``'s state dict (contiguous CPU tensors) with labels and config."""
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    # One metadata key: safetensors stores several in hash order, which would change the file's bytes.
    metadata = {"gptfl": json.dumps({"labels": list(labels), "model": model_config}, sort_keys=True)}
    save_tensors(path, tensors, metadata)


def read_metadata(path: PathLike) -> dict[str, Any]:
    """``{"labels": [...], "model": {...}}`` from an exported model's header."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return json.loads(metadata["gptfl"]) if "gptfl" in metadata else {}


def load_model(path: PathLike, model: nn.Module, labels: Sequence[str]) -> nn.Module:
    """Load an exported model into ``model``; refuse other labels or mismatched shapes."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"exported model {path} does not exist; run the pretrain stage first or fix the path")
    saved_labels = read_metadata(path).get("labels")
    if saved_labels is not None and list(saved_labels) != list(labels):
        raise UserError(f"exported model {path} was trained on other labels; use one made for this run's labels")
    state = load_file(str(path))
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    wrong = [name for name in target if name in state and tuple(state[name].shape) != tuple(target[name].shape)]
    if missing or unexpected or wrong:
        first = (wrong or missing or unexpected)[0]
        raise UserError(
            f"exported model {path} does not fit model '{first}' ({len(wrong)} shape mismatches, "
            f"{len(missing)} missing, {len(unexpected)} unexpected tensors); use the same model config"
        )
    with torch.no_grad():
        model.load_state_dict(state)
    return model
