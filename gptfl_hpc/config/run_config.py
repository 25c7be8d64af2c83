"""``Config``: a whole run's settings, composed of the sections each stage package defines, and
the run's identity.

``Config.hash`` is the sha256 of the science part: everything but where the run executes, is
written and tracked (``stage_reads.WHERE_IT_RUNS``), fields declared ``operational`` or made so by
their section's other values (``Section.operational_now``) and fields declared ``added`` while at
their default, with every ``output_choice`` at its default (``schema``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from gptfl_hpc.config.labels import LabelsConfig
from gptfl_hpc.config.launcher import LauncherConfig
from gptfl_hpc.config.tracking import TrackingConfig
from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.fl.config import FederateConfig
from gptfl_hpc.identity import sha256_json
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.models.config import ModelConfig
from gptfl_hpc.pretrain.config import PretrainConfig
from gptfl_hpc.prompts.config import PromptsConfig
from gptfl_hpc.schema import Section, is_added_at_default, is_operational, is_output_choice
from gptfl_hpc.stage_reads import WHERE_IT_RUNS
from gptfl_hpc.synth.config import SynthConfig


class Config(Section):
    """A whole GPT-FL run."""

    run_dir: Path = Path("runs/quickstart")
    seed: int = Field(0, ge=0)
    labels: LabelsConfig
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    federate: FederateConfig = Field(default_factory=FederateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("run_dir", mode="before")
    @classmethod
    def _run_dir_given(cls, value: Any) -> Any:
        # An empty path is the current directory: the run would be written wherever gptfl started.
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("run_dir is empty; set it to the run's folder, e.g. run_dir=runs/my-run")
        return value

    def resolved(self) -> dict[str, Any]:
        """Plain JSON-able dict of every value, defaults included."""
        return self.model_dump(mode="json")

    def science(self) -> dict[str, Any]:
        """The part that decides results: everything but where it runs, where it is written and
        operational settings such as checkpoint cadence."""
        identity = self.as_run_identity()
        return _without_operational(identity, identity.model_dump(mode="json", exclude=set(WHERE_IT_RUNS)))

    def as_run_identity(self) -> "Config":
        """This config with every output choice at its default: what a run directory records."""
        return _with_default_choices(self)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def hash(self) -> str:
        """Identity of the run: sha256 of the science part, canonical JSON."""
        return sha256_json(self.science())


def _without_operational(section: Section, values: dict[str, Any]) -> dict[str, Any]:
    kept = {}
    for name, value in values.items():
        operational = is_operational(type(section), name) or name in section.operational_now()
        if operational or is_added_at_default(section, name):
            continue
        child = getattr(section, name)
        kept[name] = _without_operational(child, value) if isinstance(child, Section) else value
    return kept


def _with_default_choices(section: BaseModel) -> Any:
    update: dict[str, Any] = {}
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if is_output_choice(type(section), name):
            update[name] = field.default
        elif isinstance(value, BaseModel):
            update[name] = _with_default_choices(value)
    return section.model_copy(update=update)
