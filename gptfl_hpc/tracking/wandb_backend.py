"""Weights & Biases: one run per stage, grouped by run directory, offline by default (``wandb sync``
uploads ``RUN/tracking/wandb/offline-run-*`` later); the stored id makes a resumed stage continue
the same W&B run."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import wandb

from gptfl_hpc.tracking.base import Backend


class WandbBackend(Backend):
    name = "wandb"

    def __init__(self, run: Any, record: dict[str, Any]):
        super().__init__(run, record)
        settings = run.tracking.wandb
        self.created = "id" not in record
        run_id = record.get("id") or secrets.token_hex(6)
        project = record.get("project") or run.tracking.project_name(run.run_dir)
        run.folder.mkdir(parents=True, exist_ok=True)
        self.wandb_run = wandb.init(
            project=project, entity=settings.entity, group=run.group, name=f"{run.group}/{run.stage}",
            job_type=run.stage, id=run_id, resume="allow", mode=settings.mode, dir=str(run.folder),
            tags=[*settings.tags, *(f"{k}={v}" for k, v in run.tracking.axes.items())],
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        record.update(id=run_id, project=project, mode=settings.mode, dir=str(run.folder / "wandb"))

    def log_config(self, params: dict[str, str], extra: dict[str, Any]) -> None:
        self.wandb_run.config.update(params, allow_val_change=True)

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.wandb_run.log(values, step=step)

    def log_artifact(self, path: Path) -> None:
        self.wandb_run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        self.wandb_run.finish()
