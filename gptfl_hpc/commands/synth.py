"""``gptfl synth``: make the synthetic dataset as one array job; ``gptfl synth verify RUN`` checks it;
``gptfl synth stats RUN`` shows the per-sample scores (runs made with ``synth.score``).

    gptfl synth CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]
    gptfl synth CONFIG --task K          # one array task in this process (plain sbatch arrays)
    gptfl synth verify RUN               # re-check every shard; exit 1 naming any bad one
    gptfl synth stats RUN [synth.score.duplicate_threshold=T]
                                         # score distribution and near-duplicates per class, and a grid
                                         # of each class's lowest- and highest-scoring samples

On a fresh run the prompts are made first (their own job, which the array waits for).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gptfl_hpc.commands.common import config_from_args
from gptfl_hpc.commands.stage import add_stage_command, run_stage
from gptfl_hpc.errors import UserError
from gptfl_hpc.orchestrate.stages import SYNTH
from gptfl_hpc.orchestrate.submit import run_array_task_here
from gptfl_hpc.rundir import check_run_dir

NAME = SYNTH.name


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_stage_command(subparsers, NAME, __doc__)
    parser.add_argument("--task", type=int, metavar="K", help="run array task K here (for plain sbatch arrays)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.config == "verify":
        return verify_command(args.overrides)
    if args.config == "stats":
        return stats_command(args.overrides)
    if args.task is None:
        return run_stage(args, name=NAME)
    config = config_from_args(args)
    check_run_dir(config)
    result = run_array_task_here(config, SYNTH, args.task)
    json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
    print()
    return 0


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


THRESHOLD_KEY = "synth.score.duplicate_threshold"


def stats_command(rest: list[str]) -> int:
    from gptfl_hpc.synth.scoring.stats import table
    from gptfl_hpc.synth.scoring.summary import write_score_stats

    usage = f"usage: gptfl synth stats RUN_DIR [{THRESHOLD_KEY}=T] (T in (0, 1])"
    if not rest or any(not arg.startswith(THRESHOLD_KEY + "=") for arg in rest[1:]) or len(rest) > 2:
        raise UserError(usage)
    threshold = None
    if len(rest) == 2:
        try:
            threshold = float(rest[1].split("=", 1)[1])
        except ValueError:
            raise UserError(usage) from None
        if not 0 < threshold <= 1:
            raise UserError(usage)
    stats = write_score_stats(Path(rest[0]), threshold)
    for line in table(stats.rows, stats.threshold):
        print(line)
    print(f"wrote {stats.table} and {stats.grid} (each class's lowest- and highest-scoring samples)")
    return 0
