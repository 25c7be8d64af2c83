"""The one pattern every stage command follows.

``gptfl STAGE CONFIG [overrides] [--executor inline|local|slurm|debug] [--dry-run] [--wait]``:
refuse a run_dir made by another config, then hand the stage to ``orchestrate.submit_stage``.
"""

from __future__ import annotations

import argparse
import functools
from typing import Optional

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.orchestrate.stages import BY_NAME, command_stage
from gptfl_hpc.orchestrate.submit import submit_stage
from gptfl_hpc.rundir import check_run_dir


def add_stage_command(subparsers: argparse._SubParsersAction, name: str,
                      description: Optional[str] = None) -> argparse.ArgumentParser:
    """``gptfl NAME`` for the stage of that name."""
    parser = add_job_parser(subparsers, name, BY_NAME[name].help, description)
    parser.set_defaults(func=functools.partial(run_stage, name=name))
    return parser


def run_stage(args: argparse.Namespace, *, name: str) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    return submit_stage(config, [command_stage(config, name)], dry_run=args.dry_run, wait=args.wait, prefix=name)
