"""Export the trained model with ``models.export.save_model``, byte-reproducibly.

safetensors (0.8) writes the ``__metadata__`` entries of its header in hash-map order, which
changes from process to process; the same weights then give files that differ in the header.
``sort_metadata`` rewrites that header with the entries in name order -- same length, same
tensors, same offsets -- so an interrupted and resumed run yields the very bytes of an
uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from gptfl_hpc.durable import atomic_write_bytes
from gptfl_hpc.models.export import save_model

_LENGTH_BYTES = 8  # the header's length, little-endian u64, starts the file


def export_model(path: Path, model: nn.Module, labels: Sequence[str], model_config: dict[str, Any]) -> None:
    save_model(path, model, labels, model_config)
    sort_metadata(path)


def sort_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its metadata sorted by key (atomically; no-op if sorted)."""
    data = Path(path).read_bytes()
    length = int.from_bytes(data[:_LENGTH_BYTES], "little")
    raw = data[_LENGTH_BYTES : _LENGTH_BYTES + length]
    header = json.loads(raw)
    metadata = header.get("__metadata__")
    if not metadata or list(metadata) == sorted(metadata):
        return
    header["__metadata__"] = dict(sorted(metadata.items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > length:  # only the order changed, so this cannot happen with a well-formed file
        raise ValueError(f"{path}: sorted safetensors header is longer than the original")
    # safetensors pads its header with spaces; keeping the length keeps every tensor offset.
    padded = text + b" " * (length - len(text))
    atomic_write_bytes(path, data[:_LENGTH_BYTES] + padded + data[_LENGTH_BYTES + length :])
