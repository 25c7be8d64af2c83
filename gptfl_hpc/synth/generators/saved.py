"""What a ``save_pretrained`` folder holds, read from its small index files only (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from gptfl_hpc.errors import UserError


def saved_class(directory: Path) -> Optional[str]:
    """The class a ``save_pretrained`` directory was written by, read from its index or config."""
    index = directory / "model_index.json"  # a diffusers pipeline
    if index.is_file():
        return read_json(index).get("_class_name")
    config = directory / "config.json"  # a single transformers or diffusers model
    if config.is_file():
        content = read_json(config)
        architectures = content.get("architectures") or []
        return architectures[0] if architectures else content.get("_class_name")
    return None


def component_config(directory: Path, component: str) -> dict:
    """The ``config.json`` of one pipeline component (``{}`` when it has none)."""
    path = directory / component / "config.json"
    return read_json(path) if path.is_file() else {}


def read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}); re-download or re-save the weights") from exc
    if not isinstance(content, dict):
        raise UserError(f"{path} does not hold a JSON object; re-download or re-save the weights")
    return content
