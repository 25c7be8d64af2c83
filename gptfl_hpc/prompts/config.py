"""The ``prompts`` config section: label names -> prompts per class."""

from __future__ import annotations

from pydantic import Field

from gptfl_hpc.schema import Section


class PromptsConfig(Section):
    """Prompts per class from templates and an optional local LLM."""

    per_class: int = Field(10, ge=1, description="unique prompts per class")
