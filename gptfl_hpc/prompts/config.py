"""The ``prompts`` config section: label names -> prompts per class.

Templates come first (the modality's built-ins, then the user's), then a local language model
expands each label until every class has ``per_class`` unique prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from gptfl_hpc.prompts.templates import template_problem
from gptfl_hpc.schema import Section

TINY = "tiny"


class LLMConfig(Section):
    """A local transformers language model that expands a label into prompts by sampling."""

    path: str = Field(..., description="local directory saved with save_pretrained, or 'tiny' for a tiny random model")
    kind: Literal["seq2seq", "causal"] = Field(
        "seq2seq", description="seq2seq: fed the label (T5 on CommonGen); causal: fed the fill-in-the-blank query"
    )
    revision: Optional[str] = Field(None, description="recorded in provenance; null = a fingerprint of the files")
    query: Optional[str] = Field(
        None, description="the model's input per label, with {label}; null = the label (seq2seq) or the paper's query (causal)"
    )
    batch_size: int = Field(16, ge=1, description="prompts sampled per generate call (one call per attempt)")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(50, ge=0, description="0 = no top-k filtering")
    require_label: bool = Field(True, description="keep only outputs that mention the label, as the paper's prompts do")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU")

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if value != TINY and not Path(value).exists():
            raise ValueError(
                f"prompts.llm.path {value} does not exist; give a local model directory saved with "
                "save_pretrained, or 'tiny' for a tiny random model"
            )
        return value

    @field_validator("query")
    @classmethod
    def _check_query(cls, value: Optional[str]) -> Optional[str]:
        problem = value is not None and template_problem(value)
        if problem:
            raise ValueError(f"prompts.llm.query {value!r} {problem}")
        return value


class PromptsConfig(Section):
    """Prompts per class from templates and an optional local LLM."""

    per_class: Optional[int] = Field(
        None, ge=1, description="unique prompts per class; null = one per template (needs no LLM)"
    )
    builtin: bool = Field(True, description="use the modality's built-in templates")
    domain: Optional[str] = Field(None, description="image subject word: 'flower' -> 'a flower photo of {label}'")
    templates: list[str] = Field(default_factory=list, description="more templates with {label}, after the built-ins")
    label_spaces: bool = Field(True, description="write '_' in label names as spaces (crackling_fire -> crackling fire)")
    llm: Optional[LLMConfig] = None
    max_attempts: int = Field(20, ge=1, description="LLM generate calls per class before giving up")

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: list[str]) -> list[str]:
        for template in value:
            problem = template_problem(template)
            if problem:
                raise ValueError(f"prompts.templates entry {template!r} {problem}")
        return value

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.strip():
            raise ValueError("prompts.domain is empty; write a subject word such as 'flower', or null")
        if value is not None and ("{" in value or "}" in value):
            raise ValueError(f"prompts.domain {value!r} is a word, not a template; put templates in prompts.templates")
        return value

    @model_validator(mode="after")
    def _check_sources(self) -> "PromptsConfig":
        if not self.builtin and not self.templates and self.llm is None:
            raise ValueError("prompts has no source: prompts.builtin is false, prompts.templates is empty and "
                             "prompts.llm is null; enable one of them")
        if self.llm is not None and self.per_class is None:
            raise ValueError("prompts.per_class is null but prompts.llm is set; say how many prompts per class "
                             "the LLM should fill up to")
        return self
