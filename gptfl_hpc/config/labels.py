"""The ``labels`` section: the run's ordered label list, which fixes every stage's class indices.

The list is given in the config, read from a file (one label per line), or read from the label
union that ``gptfl labels aggregate`` decoded from the clients' IBLTs; an empty or repeating list
is one line naming the fix.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from gptfl_hpc.errors import UserError
from gptfl_hpc.schema import Section


def _repeated(names: list[str]) -> list[str]:
    """Names that occur more than once, sorted."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


class LabelsConfig(Section):
    """The run's ordered label list; it fixes the class indices of every stage."""

    source: Literal["list", "file", "iblt"] = "list"
    names: list[str] = Field(default_factory=list, description="with source: list")
    path: Optional[Path] = Field(None, description="with source: file (one per line) or iblt")

    @model_validator(mode="after")
    def _check_source(self) -> "LabelsConfig":
        if self.source == "list":
            if not self.names:
                raise ValueError("labels.names is empty; list the label names or set labels.source")
            repeated = _repeated(self.names)
            if repeated:
                raise ValueError(f"labels.names repeats {repeated}; each label once")
        elif self.path is None:
            raise ValueError(f"labels.source '{self.source}' needs labels.path")
        elif not self.path.exists():
            raise ValueError(f"labels.path {self.path} does not exist; fix the path")
        return self

    def load(self) -> list[str]:
        """The ordered label names; raises ``UserError`` for an empty or repeating list."""
        if self.source == "list":
            return list(self.names)
        if self.source == "iblt":
            from gptfl_hpc.labels.files import load_label_union

            return load_label_union(self.path)
        names = [line.strip() for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not names:
            raise UserError(f"labels.path {self.path} lists no labels; write one label name per line")
        repeated = _repeated(names)
        if repeated:
            raise UserError(f"labels.path {self.path} repeats {repeated}; list each label once")
        return names
