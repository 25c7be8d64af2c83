"""Where a run's tracking lives, as ``gptfl status`` prints it: read from the stages' records in
``RUN/tracking/``, so it names what the stages used, without importing any tracking library."""

from __future__ import annotations

import shlex
from pathlib import Path

from gptfl_hpc.tracking.stage_tracker import read_records


def tracking_lines(run_dir: Path) -> list[str]:
    """One line per place: the TensorBoard logdir, the MLflow store and experiment, the W&B runs."""
    logdirs, stores, wandb_runs = {}, {}, []
    for record in read_records(run_dir):
        backends = record.get("backends", {})
        if "logdir" in backends.get("tensorboard", {}):
            logdirs[backends["tensorboard"]["logdir"]] = None
        mlflow = backends.get("mlflow", {})
        if "tracking_uri" in mlflow:
            stores[(mlflow["tracking_uri"], mlflow.get("experiment", ""))] = None
        wandb = backends.get("wandb", {})
        if "id" in wandb:
            wandb_runs.append((record.get("stage", ""), wandb))
    lines = [f"tensorboard --logdir {shlex.quote(logdir)}" for logdir in logdirs]
    lines += [f"mlflow ui --backend-store-uri {shlex.quote(uri)}  (experiment {experiment})" for uri, experiment in stores]
    for stage, wandb in wandb_runs:
        folders = sorted(Path(wandb["dir"]).glob(f"*-{wandb['id']}"))
        if wandb.get("mode") == "offline":
            shown = " ".join(shlex.quote(str(folder)) for folder in folders) or shlex.quote(f"{wandb['dir']}/offline-run-*-{wandb['id']}")
            lines.append(f"wandb {stage}: offline run {wandb['id']} (project {wandb['project']}); upload: wandb sync {shown}")
        else:
            lines.append(f"wandb {stage}: run {wandb['id']} in project {wandb['project']}")
    return lines
