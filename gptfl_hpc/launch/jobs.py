"""Which jobs a run submitted, and what Slurm says about them now.

``RUN/jobs.json`` maps each stage to the executor and job ids of its latest submission, so
``gptfl status RUN`` can show pending and running jobs next to what is on disk.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from gptfl_hpc.durable import atomic_write_json

JOBS_FILE = "jobs.json"


def read_jobs(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / JOBS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def record_jobs(run_dir: Path, stage: str, executor: str, job_ids: list[str]) -> None:
    jobs = read_jobs(run_dir)
    jobs[stage] = {"executor": executor, "job_ids": job_ids, "submitted": int(time.time())}
    atomic_write_json(Path(run_dir) / JOBS_FILE, jobs)


def queued_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: state}`` for the ids still in Slurm's queue (pending, running, requeued...)."""
    if not job_ids:
        return {}
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(arrays)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states
