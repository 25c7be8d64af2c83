"""``gptfl synth``: make the synthetic dataset as one array job; ``gptfl synth verify RUN`` checks it.

    gptfl synth CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]
    gptfl synth CONFIG --task K          # one array task in this process (plain sbatch arrays)
    gptfl synth verify RUN               # re-check every shard; exit 1 naming any bad one
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import Launcher
from gptfl_hpc.launch.executors import max_array_size, sbatch_script
from gptfl_hpc.rundir import check_run_dir

NAME = "synth"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_job_parser(
        subparsers, NAME, "prompts -> synthetic shards (one array job); `gptfl synth verify RUN` checks them", __doc__
    )
    parser.add_argument("--task", type=int, metavar="K", help="run array task K here (for plain sbatch arrays)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.config == "verify":
        return verify_command(args.overrides)
    config = config_from_args(args)
    check_run_dir(config)
    if args.task is not None:
        return run_one_task(config, args.task)
    if args.dry_run:
        return dry_run(config)
    return submit(config, wait=args.wait)


def verify_command(rest: list[str]) -> int:
    from pathlib import Path

    from gptfl_hpc.synth.stage import verify

    if len(rest) != 1:
        raise UserError("usage: gptfl synth verify RUN_DIR (the run_dir of a config)")
    problems = verify(Path(rest[0]))
    for name, problem in problems:
        print(f"BAD {name}: {problem}")
    if problems:
        print(f"synth verify: {len(problems)} shard(s) not good; run `gptfl synth` again to make them")
        return 1
    print("synth verify: every planned shard is complete and matches its checksum")
    return 0


def _check_array_size(tasks: int, config: Config) -> None:
    if config.launcher.executor != "slurm":
        return
    limit = max_array_size()
    if tasks > limit:
        raise UserError(
            f"the plan needs {tasks} array tasks but the cluster's MaxArraySize is {limit}; "
            f"lower synth.tasks to at most {limit}"
        )


def dry_run(config: Config) -> int:
    from gptfl_hpc.synth.stage import compute_plan, measured_rate

    labels = config.labels.load()
    plan = compute_plan(config, len(labels))
    _check_array_size(plan.num_tasks, config)
    model = config.synth.model
    print(f"synth: {plan.total} samples = {plan.per_class} per class x {plan.num_labels} labels")
    print(f"synth: {plan.num_shards} shards of {plan.samples_per_shard}, {plan.num_tasks} array tasks "
          f"of {plan.shards_per_task} shards, batch {model.batch_size}")
    print(f"synth: generator {model.kind} ({model.weights}), {model.steps} steps, guidance U{list(plan.guidance)}")
    rate = measured_rate(config)
    if rate:
        parallel = min(plan.num_tasks, config.launcher.for_stage(NAME).slurm.array_parallelism)
        hours = plan.total / (rate * parallel) / 3600
        print(f"synth: estimated {hours:.2f} h at the measured {rate:.2f} samples/s per task, {parallel} tasks at once")
    else:
        print("synth: no measured samples/s yet for this run (each finished task records its own); "
              "run a small synth.count first to measure")
    print(f"synth: run_dir {config.run_dir}, executor {config.launcher.executor}, nothing submitted")
    if config.launcher.executor == "slurm":
        print(sbatch_script(config.launcher.for_stage(NAME), config.run_dir / "logs" / NAME, array=plan.num_tasks,
                            job_name=f"gptfl-{NAME}"), end="")
    return 0


def submit(config: Config, wait: bool) -> int:
    from gptfl_hpc.synth.stage import prepare, run_array_task, summarize

    job = prepare(config)  # fails here, before anything is submitted, on bad prompts or weights
    _check_array_size(job.plan.num_tasks, config)
    launcher = Launcher(config.launcher, config.run_dir / "logs")
    items = [(config, task) for task in range(job.plan.num_tasks)]
    jobs = launcher.map_array(run_array_task, items, name=NAME)
    executor = config.launcher.executor
    first = jobs[0].job_id if jobs else "-"
    print(f"synth: {executor} array of {len(jobs)} tasks ({first}...), logs under {config.run_dir / 'logs' / NAME}")
    if executor == "slurm" and not wait:
        return 0
    results = launcher.wait(jobs)
    print(json.dumps(summarize(job, results), indent=2, sort_keys=True))
    return 0


def run_one_task(config: Config, task: int) -> int:
    """One task in this process, preemptible like any job (USR2 -> commit -> requeue)."""
    from gptfl_hpc.launch.requeue import run_preemptible
    from gptfl_hpc.synth.stage import run_task

    result: Any = run_preemptible(
        lambda: run_task(config, task),
        grace_s=config.launcher.preempt_grace_s,
        max_requeues=config.launcher.slurm.max_requeues,
    )
    json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
    print()
    return 0
