"""The ``synth.score`` section: which model scores each sample against its prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from gptfl_hpc.schema import Section

ScoreKind = Literal["clip", "clap", "tiny"]


class ScoreConfig(Section):
    """A CLIP (images) or CLAP (speech, sound) model loaded with ``from_pretrained(<local dir>)``;
    ``tiny`` builds a tiny random one of the generator's modality for tests."""

    kind: ScoreKind = Field("clip", description="clip (images), clap (speech and sound) or tiny (tests)")
    model: Optional[str] = Field(None, description="local CLIPModel/ClapModel directory; unused by tiny")
    duplicate_threshold: float = Field(
        0.95, gt=0, le=1, description="`gptfl synth stats`: cosine of two samples' embeddings above which they are "
        "near-duplicates"
    )

    @field_validator("model")
    @classmethod
    def _absolute(cls, value: Optional[str]) -> Optional[str]:
        # Jobs may start in another working directory (or on another node): resolve at load.
        return None if value is None else str(Path(value).expanduser().absolute())

    @model_validator(mode="after")
    def _model_named(self) -> "ScoreConfig":
        if self.kind != "tiny" and self.model is None:
            raise ValueError(
                f"synth.score.model is not set: kind {self.kind} needs a local "
                f"{'CLIPModel' if self.kind == 'clip' else 'ClapModel'} directory (or use kind: tiny)"
            )
        return self
