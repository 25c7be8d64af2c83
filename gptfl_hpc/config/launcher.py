"""The ``launcher`` section: where and how the stages run, never what they make.

``launcher.slurm`` maps onto sbatch options; ``launcher.stages.<stage>`` changes them for one
stage's jobs (more nodes for pretraining, a GPU for synthesis), checked at load like the section
itself. The run's identity leaves this section out, so the same run can move between executors.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from gptfl_hpc.config.slurm_time import slurm_time_to_minutes
from gptfl_hpc.config.validation_errors import RANGE_ERRORS, boolean_problem, closest_name, coerced_boolean
from gptfl_hpc.schema import Section
from gptfl_hpc.stage_reads import STAGE_FAMILY, STAGE_NAMES


class SlurmConfig(Section):
    """Slurm parameters; each maps onto one sbatch option."""

    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    time: Union[int, str] = Field(60, description="minutes or D-HH:MM:SS")
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(1, ge=1)
    mem: Optional[str] = Field(None, description="per node, e.g. 64G")
    array_parallelism: int = Field(32, ge=1, description="max array tasks running at once")
    signal_delay_s: int = Field(120, ge=0, description="USR2 this long before the time limit")
    max_requeues: int = Field(20, ge=0, description="preemptions survived before giving up")
    job_name: str = "gptfl"
    setup: list[str] = Field(default_factory=list, description="shell lines run before the job")
    srun_args: list[str] = Field(default_factory=list)
    extra: dict[str, Union[str, int, bool]] = Field(
        default_factory=dict, description="any other sbatch option, e.g. {constraint: a100}"
    )

    @field_validator("time")
    @classmethod
    def _check_time(cls, value: Union[int, str]) -> Union[int, str]:
        slurm_time_to_minutes(value)
        return value

    @field_validator("mem")
    @classmethod
    def _check_mem(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"\d+[KMGT]?", str(value)):
            raise ValueError(f"'{value}' is not a Slurm memory size; use e.g. 64G or 4000M")
        return value

    @property
    def time_min(self) -> int:
        return slurm_time_to_minutes(self.time)


class LauncherConfig(Section):
    """Where stages run. ``executor`` is always explicit: never auto-detected."""

    executor: Literal["inline", "local", "slurm", "debug"] = "local"
    poll_interval_s: float = Field(5.0, gt=0)
    preempt_grace_s: float = Field(60.0, gt=0, description="wait this long for a safe point")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-stage changes to slurm, e.g. {synth: {gpus_per_node: 1}, pretrain: {nodes: 2}}",
    )

    @model_validator(mode="after")
    def _check_stages(self) -> "LauncherConfig":
        for stage, changes in self.stages.items():
            if stage not in STAGE_NAMES:
                hint = closest_name(stage, STAGE_NAMES)
                fix = f"did you mean '{hint}'?" if hint else f"stages are {', '.join(STAGE_NAMES)}"
                raise ValueError(f"launcher.stages.{stage} is not a stage; {fix}")
            try:
                slurm = SlurmConfig.model_validate({**self.slurm.model_dump(), **changes})
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(part) for part in first["loc"])
                if first["type"] == "extra_forbidden":
                    hint = closest_name(key, SlurmConfig.model_fields)
                    problem = f"is not a Slurm setting; did you mean '{hint}'?" if hint else "is not a Slurm setting"
                elif isinstance(first.get("input"), bool) and first["type"] in RANGE_ERRORS:
                    problem = boolean_problem(first["input"])
                else:
                    problem = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"launcher.stages.{stage}.{key}: {problem}") from None
            coerced = coerced_boolean(changes, slurm)
            if coerced:
                raise ValueError(f"launcher.stages.{stage}.{coerced[0]}: {coerced[1]}")
        return self

    def for_stage(self, stage: str) -> "LauncherConfig":
        """This launcher with ``stages[stage]`` applied to its Slurm parameters. FL from scratch is the
        same federation as GPT-FL: ``stages.federate`` applies to it too, under its own settings."""
        changes = {**self.stages.get(STAGE_FAMILY.get(stage, stage), {}), **self.stages.get(stage, {})}
        if not changes:
            return self
        slurm = SlurmConfig.model_validate({**self.slurm.model_dump(), **changes})
        return self.model_copy(update={"slurm": slurm})
