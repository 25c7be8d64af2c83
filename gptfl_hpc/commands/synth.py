"""``gptfl synth``: make the synthetic dataset as one array job; ``gptfl synth verify RUN`` checks it.

    gptfl synth CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]
    gptfl synth CONFIG --task K          # one array task in this process (plain sbatch arrays)
    gptfl synth verify RUN               # re-check every shard; exit 1 naming any bad one

On a fresh run the prompts are made first (their own job, which the array waits for).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gptfl_hpc.commands.common import config_from_args
from gptfl_hpc.commands.stage import add_stage_command, run_stage
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.rundir import check_run_dir
from gptfl_hpc.stages import SYNTH

NAME = SYNTH.name


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_stage_command(subparsers, NAME, __doc__, explain=explain, summarize=summarize)
    parser.add_argument("--task", type=int, metavar="K", help="run array task K here (for plain sbatch arrays)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.config == "verify":
        return verify_command(args.overrides)
    if args.task is None:
        return run_stage(args, name=NAME, explain=explain, summarize=summarize)
    config = config_from_args(args)
    check_run_dir(config)
    return run_one_task(config, args.task)


def verify_command(rest: list[str]) -> int:
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


def explain(config: Config, plan: Any) -> list[str]:
    """The plan, the generator and the time estimate for a dry run."""
    from gptfl_hpc.synth.stage import measured_rate, rounding_note

    model = config.synth.model
    lines = [
        f"{plan.total} samples = {plan.per_class} per class x {plan.num_labels} labels",
        f"{plan.num_shards} shards of {plan.samples_per_shard}, {plan.num_tasks} array tasks "
        f"of {plan.shards_per_task} shards, batch {model.batch_size}",
        f"generator {model.kind} ({model.weights}), {model.steps} steps, guidance U{list(plan.guidance)}",
    ]
    note = rounding_note(config, plan)
    if note:
        lines.append(note)
    rate = measured_rate(config)
    if rate:
        parallel = min(plan.num_tasks, config.launcher.for_stage(NAME).slurm.array_parallelism)
        hours = plan.total / (rate * parallel) / 3600
        lines.append(f"estimated {hours:.2f} h at the measured {rate:.2f} samples/s per task, {parallel} tasks at once")
    else:
        lines.append("no measured samples/s yet for this run (each finished task records its own); "
                     "run a small synth.count first to measure")
    return lines


def summarize(config: Config, results: list) -> dict[str, Any]:
    from gptfl_hpc.synth.stage import prepare, summarize as totals

    return totals(prepare(config), results)


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
