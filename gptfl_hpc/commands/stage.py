"""The one pattern every stage command follows.

``gptfl STAGE CONFIG [overrides] [--executor inline|local|slurm|debug] [--dry-run] [--wait]``:
validate, refuse a run_dir made by another config, then run ``stage_fn(config)`` as one job.
Local executors wait for the result; Slurm returns after submitting unless ``--wait`` is given.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
from typing import Any, Callable

from gptfl_hpc.commands.common import add_config_arguments, add_executor_arguments, config_from_args
from gptfl_hpc.config import Config
from gptfl_hpc.launch import Launcher
from gptfl_hpc.launch.executors import sbatch_script
from gptfl_hpc.rundir import check_run_dir

StageFn = Callable[[Config], Any]


def resolve_target(target: str) -> StageFn:
    """``"package.module:function"`` -> the function."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def add_stage_command(subparsers: argparse._SubParsersAction, name: str, target: str, help: str) -> None:
    parser = subparsers.add_parser(name, help=help)
    add_config_arguments(parser)
    add_executor_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="with --executor slurm: wait for the job to finish")
    parser.set_defaults(func=functools.partial(run_stage, name=name, target=target))


def run_stage(args: argparse.Namespace, *, name: str, target: str) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    stage_fn = resolve_target(target)
    log_dir = config.run_dir / "logs"
    executor = config.launcher.executor
    if args.dry_run:
        print(f"{name}: would run {target} with executor '{executor}', config hash {config.hash}")
        print(f"{name}: run_dir {config.run_dir}, logs under {log_dir / name}")
        if executor == "slurm":
            print(sbatch_script(config.launcher, log_dir / name, job_name=f"gptfl-{name}"), end="")
        return 0
    launcher = Launcher(config.launcher, log_dir)
    job = launcher.submit(stage_fn, config, name=name)
    print(f"{name}: {executor} job {job.job_id}, logs under {log_dir / name}")
    if executor == "slurm" and not args.wait:
        return 0
    result = launcher.wait([job])[0]
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0
