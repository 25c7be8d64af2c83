"""``gptfl status RUN``: what each stage of a run has on disk.

Per stage: ``done``, ``partial`` (resumable work on disk) or ``missing``; for synthesis also the
shards complete / partial / missing / bad. Reads only; the run's own ``config.yaml`` says what was
planned.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gptfl_hpc.config import Config
from gptfl_hpc.rundir import load_run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="what each stage of a run has done")
    parser.add_argument("run_dir", help="a run directory (the run_dir of a config)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    parser.set_defaults(func=main)


def synth_status(config: Config) -> dict[str, Any]:
    from gptfl_hpc.synth.manifest import shard_states
    from gptfl_hpc.synth.stage import PLAN, load_plan, synth_dir

    folder = synth_dir(config)
    if not (folder / PLAN).is_file():
        return {"state": "missing"}
    labels = config.labels.load()
    plan = load_plan(config, len(labels))
    states = shard_states(folder, plan, labels, check=False)
    counts = {kind: sum(s.state == kind for s in states) for kind in ("complete", "partial", "missing", "bad")}
    samples = sum(s.committed for s in states)
    state = "done" if counts["complete"] == plan.num_shards else ("partial" if samples else "missing")
    partial = {f"shard-{s.shard:05d}": f"{s.committed}/{s.planned}" for s in states if s.state == "partial"}
    return {"state": state, "shards": counts, "samples": f"{samples}/{plan.total}", "partial": partial}


def file_stage_status(folder: Path, output: str) -> dict[str, Any]:
    """A stage whose result is one file, with checkpoints beside it while it runs."""
    if (folder / output).is_file():
        return {"state": "done"}
    if folder.is_dir() and any(folder.iterdir()):
        return {"state": "partial"}
    return {"state": "missing"}


def run_status(config: Config) -> dict[str, Any]:
    run = config.run_dir
    status = {
        "prompts": {"state": "done" if (run / "prompts.json").is_file() else "missing"},
        "synth": synth_status(config),
        "pretrain": file_stage_status(run / "pretrain", "model.safetensors"),
        "federate": file_stage_status(run / "federate", "summary.json"),
        "federate-scratch": file_stage_status(run / "federate-scratch", "summary.json"),
        "report": file_stage_status(run / "report", "report.md"),
    }
    _add_queued_jobs(run, status)
    return status


def _add_queued_jobs(run: Path, status: dict[str, Any]) -> None:
    """Slurm jobs of this run still in the queue: the stage shows as running/pending with their ids."""
    from gptfl_hpc.launch.jobs import queued_states, read_jobs

    for stage, record in read_jobs(run).items():
        if record.get("executor") != "slurm" or stage not in status:
            continue
        states = queued_states(record.get("job_ids", []))
        if states:
            running = sorted(states.values())
            status[stage]["state"] = "running" if "RUNNING" in running else running[0].lower()
            status[stage]["jobs"] = " ".join(f"{job}={state}" for job, state in sorted(states.items()))


def main(args: argparse.Namespace) -> int:
    config = load_run(Path(args.run_dir))
    status = run_status(config)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"run {config.run_dir}")
    for stage, info in status.items():
        details = "  ".join(f"{key} {_shown(value)}" for key, value in info.items() if key != "state" and value)
        print(f"  {stage:<16} {info['state']:<8} {details}".rstrip())
    return 0


def _shown(value: Any) -> str:
    if isinstance(value, dict):  # counts read "3 complete", progress reads "shard-00004 120/500"
        return ", ".join(f"{v} {k}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items())
    return str(value)
