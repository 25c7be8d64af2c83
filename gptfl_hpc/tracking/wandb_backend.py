"""Weights & Biases: one run per stage, grouped by run directory, offline by default (``wandb sync``
uploads ``RUN/tracking/wandb/offline-run-*`` later); the stored id makes a resumed stage continue
the same W&B run."""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path
from typing import Any

import wandb

from gptfl_hpc.tracking.base import Backend

# A W&B service inherited from the process that started this one (a test, a notebook) would take
# this stage's run into that process's service, whose files are written only when it ends; each
# process that tracks starts its own. This module is imported before its process's first run.
os.environ.pop("WANDB_SERVICE", None)


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

    def last_steps(self, keys: list[str]) -> "dict[str, int] | None":
        """Offline: the steps the run files of this id hold (a kill loses what W&B had not written)."""
        if self.record.get("mode") != "offline":
            return None
        held: dict[str, int] = {}
        for step, values in offline_history(Path(self.record["dir"]), self.record["id"]):
            for key in values:
                held[key] = max(step, held.get(key, step))
        return held

    def log_config(self, params: dict[str, str], extra: dict[str, Any]) -> None:
        self.wandb_run.config.update(params, allow_val_change=True)

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.wandb_run.log(values, step=step)

    def log_artifact(self, path: Path) -> None:
        self.wandb_run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        self.wandb_run.finish()


def offline_history(folder: Path, run_id: str) -> list[tuple[int, dict]]:
    """``(step, values)`` of every history row in the offline runs of ``run_id``, oldest first, read
    with W&B's own record type from its run files (a LevelDB log after a 7-byte header)."""
    import json

    from wandb.proto import wandb_internal_pb2

    rows = []
    for path in sorted(folder.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for data in _log_records(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "history":
                values = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                          for item in record.history.item}
                step = values.pop("_step", None)
                if step is not None:
                    rows.append((int(step), {k: v for k, v in values.items() if not k.startswith("_")}))
    return rows


def _log_records(data: bytes, block: int = 32768) -> list[bytes]:
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        if kind == 0 and length == 0 or position + 7 + length > len(data):
            break  # the unwritten end of a file a kill cut short
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(pending)
            pending = b""
    return records
