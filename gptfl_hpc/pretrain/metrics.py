"""``RUN/pretrain/metrics.jsonl``: one JSON object per line, rewritten atomically on each record.

A resumed run keeps the records up to its checkpoint's step and drops the rest (they belong to
steps it is about to run again), so the finished file reads as one uninterrupted run. Records are
few (one per ``log_every`` steps and one per epoch), so rewriting the whole file stays cheap. Each
record is mirrored to the run's trackers at its step as ``<kind>/<name>`` (``train/loss``,
``eval/accuracy``); steps a resumed run does again are not logged twice (``gptfl_hpc.tracking``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.durable import atomic_write_text
from gptfl_hpc.tracking import Tracker

#: Record fields that say where a record belongs, never what was measured.
_BOOKKEEPING = ("kind", "epoch", "step", "wall_s")


class MetricsLog:
    """The metrics of one run; only the writer rank (rank 0) touches the file."""

    def __init__(self, path: Path, writer: bool, resume_step: Optional[int], tracker: Optional[Tracker] = None,
                 kind: str = "train"):
        self.path = Path(path)
        self.writer = writer
        self.tracker = tracker or Tracker()
        self.kind = kind  # the tracker's name prefix for records without a kind (timing)
        self.records: list[dict[str, Any]] = []
        if writer and resume_step is not None and self.path.is_file():
            self.records = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]

    def add(self, **record: Any) -> None:
        if not self.writer:
            return
        self.records.append(record)
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        atomic_write_text(self.path, text)
        prefix = record.get("kind", self.kind)
        self.tracker.log_metrics(record["step"], {f"{prefix}/{key}": value for key, value in record.items()
                                                  if key not in _BOOKKEEPING})

    def last(self, kind: str) -> Optional[dict[str, Any]]:
        """The newest record of ``kind`` without its bookkeeping fields, or None."""
        for record in reversed(self.records):
            if record.get("kind") == kind:
                return {k: v for k, v in record.items() if k not in ("kind", "epoch", "step", "lr")}
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
