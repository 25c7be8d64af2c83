"""``gptfl status RUN``: what each stage of a run has on disk.

Per stage: ``done``, ``partial`` (resumable work on disk) or ``missing``; for synthesis also the
shards complete / partial / missing / bad. Reads only; the run's own ``config.yaml`` says what was
planned. ``gptfl status SWEEP_DIR`` shows the same for every shared run and point of a sweep.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.rundir import CONFIG_FILE, load_run
from gptfl_hpc.sweep import is_sweep_dir, read_record, record_run_dirs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="what each stage of a run (or of a sweep's runs) has done")
    parser.add_argument("run_dir", help="a run directory (the run_dir of a config) or a sweep directory")
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


def run_status(config: Config, stages: Optional[tuple[str, ...]] = None) -> dict[str, Any]:
    """Every stage's state, or those of ``stages`` only."""
    run = config.run_dir
    checks = {
        "prompts": lambda: {"state": "done" if (run / "prompts.json").is_file() else "missing"},
        "synth": lambda: synth_status(config),
        "pretrain": lambda: file_stage_status(run / "pretrain", "model.safetensors"),
        "federate": lambda: file_stage_status(run / "federate", "summary.json"),
        "federate-scratch": lambda: file_stage_status(run / "federate-scratch", "summary.json"),
        "report": lambda: file_stage_status(run / "report", "report.md"),
    }
    status = {stage: check() for stage, check in checks.items() if stages is None or stage in stages}
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
    report = file_stage_status(Path(sweep_dir) / "report", "report.md")
    _add_queued_jobs(Path(sweep_dir), {"report": report})
    return {"sweep": str(Path(sweep_dir).absolute()), "shared": shared, "points": points, "report": report}


def _stages_of(run_dir: Path, stages: tuple[str, ...]) -> dict[str, Any]:
    if not (run_dir / CONFIG_FILE).is_file():  # not claimed yet: the sweep has not been started here
        return {stage: {"state": "missing"} for stage in stages}
    config = load_run(run_dir)
    if not config.federate.baseline:
        stages = tuple(stage for stage in stages if stage != "federate-scratch")
    return run_status(config, stages)


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
    return 0


def _print_sweep(status: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    points = status["points"]
    finished = sum(all(info["state"] == "done" for info in point["stages"].values()) for point in points.values())
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
    details = "  ".join(f"{key} {_shown(value)}" for key, value in info.items() if key != "state" and value)
    return f"{info['state']:<8} {details}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):  # counts read "3 complete", progress reads "shard-00004 120/500"
        return ", ".join(f"{v} {k}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items())
    return str(value)
