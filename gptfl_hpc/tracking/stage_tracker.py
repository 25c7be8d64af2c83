"""One stage's tracked run: resumed from the ids stored in ``RUN/tracking/<stage>.json``, logging
each scalar at each step once, and never failing the stage.

The record holds, per backend, what it needs to resume the same tracked run (W&B run id, MLflow
run ids, the TensorBoard folder) and, per scalar, the last step logged. A resumed stage (after
preemption, a kill or a node failure) recomputes the steps after its checkpoint; those at or below
the last step a backend holds are not logged to it again, so each step appears once. The record is
written (with ``durable``) after the backends took the values; backends that can say what they hold
(MLflow's store, W&B's offline run files) are asked instead on resume, since a kill can come
between the two or lose what a library had not yet written.

Any error of a backend or of the record is one WARNING for the whole stage; that backend (or, for
the record, tracking) is then left off and the stage goes on with its outputs unchanged.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptfl_hpc.config import Config, TrackingConfig
from gptfl_hpc.tracking.base import Backend, Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackedRun:
    """Where one stage of one run directory is tracked."""

    run_dir: Path
    stage: str
    tracking: TrackingConfig

    @property
    def group(self) -> str:
        """One run directory is one group (W&B group, MLflow parent run, TensorBoard folder)."""
        return self.tracking.run_name(self.run_dir)

    @property
    def folder(self) -> Path:
        return Path(self.run_dir) / "tracking"

    @property
    def tags(self) -> dict[str, str]:
        return {"gptfl.group": self.group, "gptfl.stage": self.stage,
                **{f"axis.{k}": str(v) for k, v in self.tracking.axes.items()}}


def open_tracker(config: Config, stage: str, rank: int = 0) -> Tracker:
    """The tracker of ``stage`` (``federate``, ``pretrain``, ``synth-task-00003``, ``report``): a
    do-nothing one on ranks other than 0 or with no backends."""
    if rank != 0 or not config.tracking.backends:
        return Tracker()
    return StageTracker(config, stage)


class StageTracker(Tracker):
    def __init__(self, config: Config, stage: str):
        from gptfl_hpc.tracking.params import COMPARED_METRICS, run_params
        from gptfl_hpc.tracking.registry import backend_class

        self.run = TrackedRun(Path(config.run_dir), stage, config.tracking)
        self.path = self.run.folder / f"{stage}.json"
        self.warned = False
        self.backends: list[Backend] = []
        self.record: dict[str, Any] = {"stage": stage, "group": self.run.group, "backends": {}, "last_steps": {}}
        try:
            if self.path.is_file():
                self.record.update(json.loads(self.path.read_text()))
        except (OSError, ValueError) as exc:
            self._warn(f"its record {self.path} is unreadable ({exc})")
            return
        for name in config.tracking.backends:
            try:
                backend = backend_class(name)(self.run, self.record["backends"].setdefault(name, {}))
            except Exception as exc:  # noqa: BLE001 -- tracking never fails a stage
                self._warn(f"{name} did not start ({_short(exc)})")
                if not self.record["backends"].get(name):
                    self.record["backends"].pop(name, None)
                continue
            self.backends.append(backend)
        if not self.backends or not self._save():
            self.backends = []
            return
        # Per backend, the last step of each scalar it holds: what it says itself where it can tell
        # (a kill may lose what a library had not written yet), else what the record says.
        keys = list(self.record["last_steps"])
        self.skip: dict[int, dict[str, int]] = {}
        for backend in list(self.backends):
            held = self._call(backend, "last_steps", keys)
            self.skip[id(backend)] = dict(self.record["last_steps"] if held is None else held)
        top = max(self.record["last_steps"].values(), default=None)
        for backend in list(self.backends):
            self._call(backend, "resume_after", top)
        created = [backend for backend in self.backends if backend.created]
        if created:
            params = run_params(config)
            hparams = {"group": self.run.group, "stage": stage, **config.tracking.axes}
            for backend in created:
                self._call(backend, "log_config", params, {"hparams": hparams, "metrics": COMPARED_METRICS})

    def log_config(self, params: dict[str, Any]) -> None:
        for backend in list(self.backends):
            self._call(backend, "log_config", {k: str(v) for k, v in params.items()}, {})

    def log_metrics(self, step: int, values: dict[str, Any]) -> None:
        if not self.backends:
            return
        numbers = {key: float(value) for key, value in values.items() if _is_number(value)}
        logged = set()
        for backend in list(self.backends):
            skip = self.skip[id(backend)]
            fresh = {key: value for key, value in numbers.items() if step > skip.get(key, -1)}
            if fresh:
                self._call(backend, "log_metrics", int(step), fresh)
                skip.update({key: int(step) for key in fresh})
                logged.update(fresh)
        if not logged:
            return
        last = self.record["last_steps"]
        last.update({key: max(int(step), last.get(key, -1)) for key in logged})
        if not self._save():
            self.backends = []

    def log_artifact(self, path: Path) -> None:
        for backend in list(self.backends):
            self._call(backend, "log_artifact", Path(path))

    def close(self) -> None:
        for backend in list(self.backends):
            self._call(backend, "close")
        self.backends = []

    # ------------------------------------------------------------------ failures

    def _call(self, backend: Backend, method: str, *args: Any) -> Any:
        try:
            return getattr(backend, method)(*args)
        except Exception as exc:  # noqa: BLE001 -- tracking never fails a stage
            self._warn(f"{backend.name} failed ({_short(exc)})")
            self.backends.remove(backend)
            try:
                backend.close()
            except Exception:  # noqa: BLE001
                pass
            return None

    def _save(self) -> bool:
        from gptfl_hpc.durable import atomic_write_json

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, self.record)
            return True
        except Exception as exc:  # noqa: BLE001 -- a full disk or a read-only folder must not stop the stage
            self._warn(f"its record {self.path} cannot be written ({_short(exc)})")
            return False

    def _warn(self, problem: str) -> None:
        if self.warned:
            log.debug("tracking of %s: %s", self.run.stage, problem)
            return
        self.warned = True
        log.warning("tracking of %s: %s; the stage goes on without it, its outputs are unchanged",
                    self.run.stage, problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every stage's tracked-run record of a run directory (what ``gptfl status`` shows)."""
    records = []
    for path in sorted((Path(run_dir) / "tracking").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "backends" in record:
            records.append(record)
    return records


