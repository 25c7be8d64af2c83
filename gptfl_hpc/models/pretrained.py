"""Initialise a model from ImageNet weights at a local path (never downloaded).

Accepts a safetensors file or a torch state dict (loaded with ``weights_only=True``, so the file
cannot run code). Tensors whose name and shape match are copied; the rest -- typically the
classifier, or ``conv1`` under the CIFAR stem -- keep their fresh initialisation, one log line
each.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

import torch
from torch import nn

from gptfl_hpc.errors import UserError

log = logging.getLogger(__name__)


def load_pretrained(model: nn.Module, path: Union[str, Path]) -> nn.Module:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"model.imagenet_weights {path} does not exist; point it at a local .safetensors or .pt file")
    source = _read_state_dict(path)
    target = model.state_dict()
    matched, skipped = {}, []
    for name, tensor in target.items():
        if name not in source:
            continue
        if tuple(source[name].shape) != tuple(tensor.shape):
            skipped.append(name)
            log.info(
                "pretrained %s: skip %s (shape %s, model %s)",
                path.name,
                name,
                tuple(source[name].shape),
                tuple(tensor.shape),
            )
            continue
        matched[name] = source[name].to(tensor.dtype)
    if not matched:
        raise UserError(
            f"model.imagenet_weights {path} has no tensor matching this model; is it the right architecture?"
        )
    model.load_state_dict(matched, strict=False)
    log.info(
        "pretrained %s: loaded %d of %d tensors, %d skipped for shape",
        path.name,
        len(matched),
        len(target),
        len(skipped),
    )
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoding failure means the same thing to the user
        raise UserError(
            f"model.imagenet_weights {path} is not a readable state dict ({exc.__class__.__name__}); re-export it"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(
            f"model.imagenet_weights {path} holds a {type(state).__name__}, not a state dict; save model.state_dict()"
        )
    # Checkpoints saved from DataParallel / DDP prefix every name with "module.".
    return {name.removeprefix("module."): t for name, t in state.items() if isinstance(t, torch.Tensor)}
