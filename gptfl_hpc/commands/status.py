"""``gptfl status RUN``: what each stage of a run has on disk.

Per stage: ``done``, ``partial`` (resumable work on disk), ``missing``, or ``not needed`` (with why:
no later stage reads it, e.g. with ``pretrain.shards``), judged by the stage descriptions that
``gptfl run`` uses; for synthesis also the shards complete / partial / missing / bad. Reads only; the run's own ``config.yaml`` says what was
planned. Where a run is tracked follows (the TensorBoard logdir, the MLflow store, the W&B runs and
their ``wandb sync`` command). ``gptfl status SWEEP_DIR`` shows the same for every shared run and point of a sweep.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.orchestrate.stages import stage_states
from gptfl_hpc.rundir import load_run
from gptfl_hpc.sweep import is_sweep_dir, read_record, record_run_dirs
from gptfl_hpc.tracking.locations import tracking_lines


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="what each stage of a run (or of a sweep's runs) has done")
    parser.add_argument("run_dir", help="a run directory (the run_dir of a config) or a sweep directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    parser.set_defaults(func=main)


def run_status(config: Config, stages: Optional[tuple[str, ...]] = None) -> dict[str, Any]:
    """Every stage's state (as ``gptfl run`` judges it), or those of ``stages`` only."""
    status = stage_states(config, stages)
    _add_queued_jobs(config.run_dir, status)
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


#: The stages each kind of run in a sweep makes itself; the rest it reads from shared runs.
SWEEP_STAGES = {"synth": ("prompts", "synth"), "pretrain": ("pretrain",),
                "point": ("federate", "federate-scratch", "report")}


def sweep_status(sweep_dir: Path) -> dict[str, Any]:
    """Per shared run and per point: the state of the stages it makes; then the combined report."""
    record = read_record(sweep_dir)
    shared = {}
    for entry, run_dir in zip(record["shared"], record_run_dirs(sweep_dir, record["shared"])):
        stages = _stages_of(run_dir, SWEEP_STAGES[entry["level"]])
        shared[entry["name"]] = {"describe": entry["describe"], "points": len(entry["points"]), "stages": stages}
    points = {}
    for entry, run_dir in zip(record["points"], record_run_dirs(sweep_dir, record["points"])):
        points[entry["name"]] = {"stages": _stages_of(run_dir, SWEEP_STAGES["point"])}
    layout = RunLayout(sweep_dir)
    report = {"state": "done"} if layout.report_file.is_file() else {"state": "missing"}
    _add_queued_jobs(Path(sweep_dir), {"report": report})
    return {"sweep": str(Path(sweep_dir).absolute()), "shared": shared, "points": points, "report": report}


def _stages_of(run_dir: Path, stages: tuple[str, ...]) -> dict[str, Any]:
    if not RunLayout(run_dir).config_file.is_file():  # not claimed yet: the sweep has not been started here
        return {stage: {"state": "missing"} for stage in stages}
    return run_status(load_run(run_dir), stages)


def main(args: argparse.Namespace) -> int:
    path = Path(args.run_dir)
    if is_sweep_dir(path):
        return _print_sweep(sweep_status(path), args.json)
    config = load_run(path)
    status = run_status(config)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"run {config.run_dir}")
    for stage, info in status.items():
        print(f"  {stage:<16} {_line(info)}".rstrip())
    places = tracking_lines(config.run_dir)
    if places:
        print("tracking")
        for line in places:
            print(f"  {line}")
    return 0


def _print_sweep(status: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    points = status["points"]
    finished = sum(all(info["state"] in ("done", "not needed") for info in point["stages"].values())
                   for point in points.values())
    print(f"sweep {status['sweep']}: {finished}/{len(points)} points done")
    width = max(len(name) for name in [*status["shared"], *points])
    for name, run in status["shared"].items():
        print(f"  {name:<{width}}  shared by {run['points']} point(s) ({run['describe']})")
        for stage, info in run["stages"].items():
            print(f"  {'':<{width}}    {stage:<16} {_line(info)}".rstrip())
    for name, point in points.items():
        shown = "  ".join(f"{stage} {info['state']}" for stage, info in point["stages"].items())
        print(f"  {name:<{width}}  {shown}")
    print(f"  {'report':<{width}}  {_line(status['report'])}".rstrip())
    return 0


def _line(info: dict[str, Any]) -> str:
    details = "  ".join(f"({value})" if key == "why" else f"{key} {_shown(value)}"
                        for key, value in info.items() if key != "state" and value)
    return f"{info['state']:<8} {details}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):  # counts read "3 complete", progress reads "shard-00004 120/500"
        return ", ".join(f"{v} {k}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items())
    return str(value)
