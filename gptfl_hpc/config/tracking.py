"""The ``tracking`` section: which experiment trackers watch a run, and where they write.

Tracking changes where metrics are mirrored, never what a stage makes, so the run's identity leaves
this section out (``stage_reads.WHERE_IT_RUNS``): it can be switched on for a resumed run. Which
backend is installed is checked here too, without importing it, so a missing library is one line
at load time naming the extra that installs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field, field_validator

from gptfl_hpc.config.validation_errors import closest_name
from gptfl_hpc.schema import Section

#: Backend name -> the importable module it needs (installed by ``pip install -e '.[tracking]'``).
BACKEND_LIBRARIES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
INSTALL_HINT = "pip install -e '.[tracking]'"


class WandbConfig(Section):
    """Weights & Biases: offline by default (compute nodes often have no internet; ``wandb sync`` later)."""

    mode: Literal["offline", "online"] = "offline"
    entity: Optional[str] = None
    tags: list[str] = Field(default_factory=list)


class MlflowConfig(Section):
    tracking_uri: Optional[str] = Field(None, description="default: sqlite:///RUN/tracking/mlflow.db")


class TensorboardConfig(Section):
    dir: Optional[Path] = Field(None, description="default: RUN/tracking/tensorboard")


class TrackingConfig(Section):
    """Experiment trackers; every backend is optional and none is on by default."""

    backends: list[str] = Field(default_factory=list, description="any of tensorboard, wandb, mlflow")
    project: Optional[str] = Field(None, description="W&B project; default: the sweep's or the run's folder name")
    experiment: Optional[str] = Field(None, description="MLflow experiment; default: the project")
    group: Optional[str] = Field(None, description="the run's group; default: the run's folder name")
    axes: dict[str, Union[str, int, float, bool, None]] = Field(
        default_factory=dict, description="a sweep point's axis values (set by gptfl sweep), logged as tags"
    )
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    tensorboard: TensorboardConfig = Field(default_factory=TensorboardConfig)

    @field_validator("backends")
    @classmethod
    def _known_and_installed(cls, backends: list[str]) -> list[str]:
        for name in backends:
            if name not in BACKEND_LIBRARIES:
                hint = closest_name(name, BACKEND_LIBRARIES)
                fix = f"did you mean '{hint}'?" if hint else f"backends are {', '.join(BACKEND_LIBRARIES)}"
                raise ValueError(f"'{name}' is not a tracking backend; {fix}")
            if importlib.util.find_spec(BACKEND_LIBRARIES[name]) is None:
                raise ValueError(f"the {name} backend needs the {name} library, which is not installed; {INSTALL_HINT}")
        if len(set(backends)) != len(backends):
            raise ValueError("a backend is named twice; name each once")
        return backends

    def run_name(self, run_dir: Path) -> str:
        return self.group or Path(run_dir).name

    def project_name(self, run_dir: Path) -> str:
        return self.project or Path(run_dir).name

    def experiment_name(self, run_dir: Path) -> str:
        return self.experiment or self.project_name(run_dir)

    def tensorboard_dir(self, run_dir: Path) -> Path:
        return Path(self.tensorboard.dir) if self.tensorboard.dir else Path(run_dir) / "tracking" / "tensorboard"

    def mlflow_uri(self, run_dir: Path) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{Path(run_dir).absolute() / 'tracking' / 'mlflow.db'}"

    def for_sweep_point(self, sweep_dir: Path, axes: dict) -> "TrackingConfig":
        """A point's tracking: the sweep's name as project, one store and one TensorBoard folder for
        the whole sweep, and the point's axis values; what the user set stays."""
        tracking = Path(sweep_dir) / "tracking"
        return self.model_copy(update={
            "project": self.project or Path(sweep_dir).name,
            "axes": {**axes, **self.axes},
            "mlflow": self.mlflow.model_copy(update={
                "tracking_uri": self.mlflow.tracking_uri or f"sqlite:///{Path(sweep_dir).absolute() / 'tracking' / 'mlflow.db'}"}),
            "tensorboard": self.tensorboard.model_copy(update={"dir": self.tensorboard.dir or tracking / "tensorboard"}),
        })
