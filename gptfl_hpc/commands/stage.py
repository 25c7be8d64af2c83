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
from typing import Any, Callable, Optional

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import Launcher
from gptfl_hpc.launch.executors import sbatch_script
from gptfl_hpc.rundir import check_run_dir

StageFn = Callable[[Config], Any]


def resolve_target(target: str) -> StageFn:
    """``"package.module:function"`` -> the function."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


ConfigHook = Callable[[Config], Any]


def add_stage_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    target: str,
    help: str,
    *,
    ranks: Optional[str] = None,
    check: Optional[ConfigHook] = None,
) -> None:
    """``gptfl NAME``; ``ranks`` (a key such as ``federate.ranks``) gives a multi-rank stage one Slurm
    task per rank, ``check``
    validates the stage's inputs before anything is submitted."""
    parser = add_job_parser(subparsers, name, help)
    parser.set_defaults(func=functools.partial(run_stage, name=name, target=target, ranks=ranks, check=check))


def rank_count(config: Config, ranks_key: Optional[str]) -> int:
    """The value of a dotted ``*.ranks`` key such as ``federate.ranks``; 1 for single-rank stages."""
    if ranks_key is None:
        return 1
    value: Any = config
    for part in ranks_key.split("."):
        value = getattr(value, part)
    return int(value)


def job_shape(config: Config, stage: str, ranks_key: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """``(nodes, tasks_per_node)``: on Slurm one task per rank (one task on one node for a single
    rank); locally ``(None, None)``: one task that spawns the ranks itself."""
    if config.launcher.executor != "slurm":
        return None, None
    ranks = rank_count(config, ranks_key)
    if ranks == 1:
        return 1, 1
    nodes = config.launcher.for_stage(stage).slurm.nodes
    if ranks % nodes:
        raise UserError(
            f"{ranks_key} {ranks} does not split evenly over launcher.slurm.nodes {nodes}; "
            f"make {ranks_key} a multiple of the node count"
        )
    return nodes, ranks // nodes


def run_stage(
    args: argparse.Namespace,
    *,
    name: str,
    target: str,
    ranks: Optional[str] = None,
    check: Optional[ConfigHook] = None,
) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    if check is not None:
        check(config)
    nodes, tasks = job_shape(config, name, ranks)
    log_dir = config.run_dir / "logs"
    executor = config.launcher.executor
    if args.dry_run:
        shown = f" on {rank_count(config, ranks)} ranks" if ranks else ""
        print(f"{name}: would run {target}{shown} with executor '{executor}', config hash {config.hash}")
        print(f"{name}: run_dir {config.run_dir}, logs under {log_dir / name}")
        if executor == "slurm":
            print(sbatch_script(config.launcher.for_stage(name), log_dir / name, job_name=f"gptfl-{name}", nodes=nodes,
                                tasks_per_node=tasks), end="")
        return 0
    launcher = Launcher(config.launcher, log_dir)
    job = launcher.submit(resolve_target(target), config, name=name, nodes=nodes, tasks_per_node=tasks)
    print(f"{name}: {executor} job {job.job_id}, logs under {log_dir / name}")
    if executor == "slurm" and not args.wait:
        return 0
    result = launcher.wait([job])[0]
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0
