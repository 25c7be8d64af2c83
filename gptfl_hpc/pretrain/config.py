"""The ``pretrain`` config section."""

from __future__ import annotations

from gptfl_hpc.schema import Section


class PretrainConfig(Section):
    """Centralized training on the synthesis shards."""
