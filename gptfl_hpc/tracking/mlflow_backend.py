"""MLflow: one experiment per project (a sweep), one parent run per run directory (the group) and
one child run per stage, in a SQLite store under ``RUN/tracking/`` unless ``tracking.mlflow.tracking_uri``
names another."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from gptfl_hpc.tracking.base import Backend

PARAMS_PER_CALL = 100  # MLflow's limit per log_batch
PARAM_CHARS = 6000  # MLflow's limit on a parameter value


class MlflowBackend(Backend):
    name = "mlflow"

    def __init__(self, run: Any, record: dict[str, Any]):
        super().__init__(run, record)
        uri = record.get("tracking_uri") or run.tracking.mlflow_uri(run.run_dir)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(uri)
        experiment = run.tracking.experiment_name(run.run_dir)
        experiment_id = record.get("experiment_id") or self._experiment(experiment, uri)
        parent = record.get("parent_run_id") or self._parent(experiment_id, uri)
        run_id = record.get("run_id")
        if run_id is None:
            created = self.client.create_run(experiment_id, run_name=run.stage,
                                             tags={"mlflow.parentRunId": parent, **run.tags})
            run_id = created.info.run_id
            self.created = True
        else:
            self.client.update_run(run_id, status="RUNNING")
        record.update(tracking_uri=uri, experiment=experiment, experiment_id=experiment_id,
                      parent_run_id=parent, run_id=run_id)
        self.run_id = run_id

    def _experiment(self, name: str, uri: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = None
        if uri.startswith("sqlite:///"):
            artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").absolute().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=artifacts)
        except MlflowException:  # another stage or point made it meanwhile
            return self.client.get_experiment_by_name(name).experiment_id

    def _parent(self, experiment_id: str, uri: str) -> str:
        """The group's parent run, made once per run directory (under a lock: the stages of a run,
        and the tasks of a synthesis array, may start at the same time)."""
        from gptfl_hpc.durable import atomic_write_json
        from gptfl_hpc.layout import RunLayout
        from gptfl_hpc.locks import Lock, holding

        run = self.run
        path = run.folder / "group.json"
        lock = Lock(RunLayout(run.run_dir).lock("tracking"), f"{run.folder}", "wait for the other stage")
        with holding([lock], wait=True):
            groups = json.loads(path.read_text()) if path.is_file() else {}
            key = f"{uri} {experiment_id}"
            if key not in groups.get("mlflow_parents", {}):
                parent = self.client.create_run(experiment_id, run_name=run.group,
                                                tags={"gptfl.group": run.group, "gptfl.kind": "group",
                                                      **{k: v for k, v in run.tags.items() if k != "gptfl.stage"}})
                groups.setdefault("mlflow_parents", {})[key] = parent.info.run_id
                self.parent_created = True
                atomic_write_json(path, groups)
            return groups["mlflow_parents"][key]

    def last_steps(self, keys: list[str]) -> dict[str, int]:
        held = {}
        for key in keys:
            history = self.client.get_metric_history(self.run_id, key)
            if history:
                held[key] = max(metric.step for metric in history)
        return held

    def log_config(self, params: dict[str, str], extra: dict[str, Any]) -> None:
        entries = [Param(key, value[:PARAM_CHARS]) for key, value in sorted(params.items())]
        targets = [self.run_id]
        if getattr(self, "parent_created", False):
            targets.append(self.record["parent_run_id"])
        for run_id in targets:
            for start in range(0, len(entries), PARAMS_PER_CALL):
                self.client.log_batch(run_id, params=entries[start : start + PARAMS_PER_CALL])

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step) for key, value in values.items()])

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
